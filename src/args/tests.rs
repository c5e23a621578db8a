//! The parameter-to-flag mapping and the precision flag, as the commands use them.

use super::*;
use dinonat_report::args::PrecisionArg;
use dinonat_train::trainer::config::Precision;

#[test]
fn parameters_become_flags() {
    let names = [
        ("seed", "--seed"),
        ("eval_train", "--eval-train"),
        ("n_local", "--local-crops"),
    ];
    let m = param_flags("seed 3: choose another seed", &names, false);
    assert_eq!(m, "--seed 3: choose another seed");
    let m = param_flags("seed 3: choose another seed", &names, true);
    assert_eq!(m, "--seed 3: choose another --seed");
    let m = param_flags("eval_train, eval_val; n_local 0, my_n_local", &names, false);
    assert_eq!(m, "--eval-train, eval_val; --local-crops 0, my_n_local");
    let m = param_flags("eval_train /d/eval_train: no images", &names, false);
    assert_eq!(
        m, "--eval-train /d/eval_train: no images",
        "paths keep their names"
    );
    assert_eq!(param_flags("seeds: x", &names, true), "seeds: x");
}

/// --precision maps to the library's precision; tf32 needs --device cuda.
#[test]
fn precision_resolves_per_device() {
    let p = |precision| PrecisionArgs { precision };
    assert_eq!(p(PrecisionArg::F32).resolve(None), Ok(Precision::F32));
    assert_eq!(
        p(PrecisionArg::Bf16).resolve(Some(DeviceArg::Cpu)),
        Ok(Precision::Bf16)
    );
    let cuda = p(PrecisionArg::Tf32).resolve(Some(DeviceArg::Cuda));
    assert_eq!(cuda, Ok(Precision::Tf32));
    for device in [None, Some(DeviceArg::Cpu)] {
        let e = p(PrecisionArg::Tf32).resolve(device).unwrap_err();
        assert!(
            e.starts_with("--precision tf32") && e.contains("--device cuda"),
            "{e}"
        );
    }
    assert_eq!(Precision::Bf16.gemm(), dinonat_engine::GemmPrecision::Bf16);
    assert_eq!(
        Precision::F32.gemm(),
        dinonat_engine::GemmPrecision::Fp32Simt
    );
}
