//! `gemm_precision_scope(GemmPrecision::Bf16)` on the CPU: every GEMM of matmul, linear and
//! conv2d, forward and backward, rounds both of its operands to BF16 and sums in f32.
//!
//! Check: an op and its input gradients (loss = sum(y * w), w BF16-exact, so upstream gradients
//! are BF16 already) run inside the scope on f32 inputs equal the same op run in plain f32 on the
//! inputs rounded to BF16 (the GEMM operands only; a bias is added in f32, not rounded). On the
//! round-while-packing path (any CPU without AVX512-BF16, or with `DINONAT_ISA=avx512`) the two
//! are the same operations, so they must agree bit for bit; on the AVX512-BF16 path products are
//! summed in pairs, so they agree to f32 rounding: relative norm error < 1e-5. And the scope does
//! something (the f32 result on the unrounded inputs differs), and ends with its guard.

use dinonat_engine::kernels::cpu::isa::{bf16_gemm_active, Bf16Gemm};
use dinonat_engine::{gemm_precision, gemm_precision_scope, DType, GemmPrecision, Result, Tensor};

mod common;
use common::{rel_err, Rng};

type OpFn = dyn Fn(&[Tensor]) -> Result<Tensor>;

fn bf16_exact(t: &Tensor) -> Tensor {
    t.to_dtype(DType::BF16).to_dtype(DType::F32)
}

/// y and the gradient of sum(y * w) for every input.
fn run(inputs: &[Tensor], w: &Tensor, f: &OpFn) -> Vec<Vec<f32>> {
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.with_grad()).collect();
    let y = f(&leaves).unwrap();
    let grads = y.mul(w).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y.to_vec::<f32>().unwrap()];
    for t in &leaves {
        out.push(grads.get(t).expect("a gradient").to_vec::<f32>().unwrap());
    }
    out
}

/// `f` inside the BF16 scope against `f` in f32 on the inputs flagged in `rounded` made BF16-exact.
fn check(r: &mut Rng, name: &str, inputs: &[Tensor], rounded: &[bool], f: &OpFn) {
    let y_shape = f(inputs).unwrap().shape().to_vec();
    let w = bf16_exact(&r.tensor(&y_shape, -1.0, 1.0));
    let plain = run(inputs, &w, f);
    let scoped = {
        let _p = gemm_precision_scope(GemmPrecision::Bf16);
        assert_eq!(gemm_precision(), GemmPrecision::Bf16);
        run(inputs, &w, f)
    };
    assert_eq!(
        gemm_precision(),
        GemmPrecision::Fp32Simt,
        "the guard ends the scope"
    );
    let ref_in: Vec<Tensor> = inputs
        .iter()
        .zip(rounded)
        .map(|(t, &round)| if round { bf16_exact(t) } else { t.clone() })
        .collect();
    let want = run(&ref_in, &w, f);
    let exact = bf16_gemm_active() == Bf16Gemm::RoundPack;
    for (i, (got, want)) in scoped.iter().zip(&want).enumerate() {
        let what = if i == 0 {
            "y".into()
        } else {
            format!("grad {}", i - 1)
        };
        let e = rel_err(got, want);
        println!("{name} {what}: rel err {e:.2e} vs f32 on rounded operands");
        if exact {
            let same = got
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{name} {what}: not bit-identical (rel err {e:.2e})");
        } else {
            assert!(e < 1e-5, "{name} {what}: rel err {e:.3e}");
        }
    }
    // The scope rounds: the plain f32 result on the unrounded inputs is another number.
    assert!(
        rel_err(&scoped[0], &plain[0]) > 1e-6,
        "{name}: the scope changed nothing"
    );
    // And after it, plain f32 again, bit for bit.
    let again = run(inputs, &w, f);
    for (a, b) in again.iter().zip(&plain) {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}: after the scope"
        );
    }
}

#[test]
fn cpu_gemms_in_the_bf16_scope_round_their_operands() {
    let mut r = Rng::new("cpu bf16 gemm scope");
    let (a, b) = (
        r.tensor(&[37, 45], -1.0, 1.0),
        r.tensor(&[45, 29], -1.0, 1.0),
    );
    check(&mut r, "matmul", &[a, b], &[true, true], &|t| {
        t[0].matmul(&t[1])
    });
    let (a, b) = (
        r.tensor(&[3, 20, 33], -1.0, 1.0),
        r.tensor(&[3, 29, 33], -1.0, 1.0),
    );
    check(
        &mut r,
        "batched matmul, B^T",
        &[a, b],
        &[true, true],
        &|t| t[0].matmul(&t[1].t()?),
    );
    let x = r.tensor(&[2, 13, 45], -1.0, 1.0);
    let (wt, bias) = (r.tensor(&[29, 45], -1.0, 1.0), r.tensor(&[29], -1.0, 1.0));
    check(
        &mut r,
        "linear",
        &[x, wt, bias],
        &[true, true, false],
        &|t| t[0].linear(&t[1], Some(&t[2])),
    );
    let img = r.tensor(&[2, 3, 9, 11], -1.0, 1.0);
    let (kw, kb) = (
        r.tensor(&[4, 3, 3, 3], -1.0, 1.0),
        r.tensor(&[4], -1.0, 1.0),
    );
    check(
        &mut r,
        "conv2d 3x3 s2 p1",
        &[img, kw, kb],
        &[true, true, false],
        &|t| t[0].conv2d(&t[1], Some(&t[2]), (2, 2), (1, 1)),
    );
    let img = r.tensor(&[2, 9, 11, 3], -1.0, 1.0);
    let (kw, kb) = (
        r.tensor(&[4, 3, 3, 3], -1.0, 1.0),
        r.tensor(&[4], -1.0, 1.0),
    );
    check(
        &mut r,
        "conv2d channels last 3x3 s2 p1",
        &[img, kw, kb],
        &[true, true, false],
        &|t| t[0].conv2d_channels_last(&t[1], Some(&t[2]), (2, 2), (1, 1)),
    );
}
