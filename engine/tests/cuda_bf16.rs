//! BF16 tensors on CUDA (docs/gpu-ops.md, "BF16 on CUDA"): the conversions bit for bit against
//! the CPU's (ties, NaN payloads, infinities, subnormals), copies between the devices that keep
//! the dtype, and each op family on BF16 CUDA inputs against the same op in f32 on the CPU on the
//! same BF16-rounded values (forward and every input gradient, by relative norm) and against the
//! CPU's BF16 result. Without a GPU each GPU test prints why it skips (a failure under
//! `DINONAT_REQUIRE_GPU=1`); the error paths that need no GPU run everywhere.
//!
//! Tolerances (the reasoning of tests/bf16.rs): a BF16 result is the f32 result rounded once, at
//! most u = 2^-8 = 3.9e-3 relative per element, so the forward is held to u norm-wise against f32
//! and against the CPU's BF16 (both devices round the f32 result once; their f32 results differ
//! by summation order only, so they can land on neighbouring BF16 values); gradients go through
//! two to four roundings: 2u = 7.8e-3.

#![allow(clippy::cloned_ref_to_slice_refs)] // the inputs read better as lists

use dinonat_engine::kernels::cpu::bf16::rounding_cases;
use dinonat_engine::{bf16, DType, Device, Result, Tensor};

mod common;
use common::{gpu_or_skip, rel_err, Rng};

const TOL_FORWARD: f64 = 3.9e-3;
const TOL_BACKWARD: f64 = 7.8e-3;
const GPU: Device = Device::Cuda(0);

type OpFn = dyn Fn(&[Tensor]) -> Result<Tensor>;

fn f32_values(t: &Tensor) -> Vec<f32> {
    t.try_to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap()
}

/// `f` on BF16 inputs on the GPU vs `f` in f32 on the CPU on the same values (y, every input
/// gradient) and vs `f` on the same BF16 inputs on the CPU (y).
fn check(r: &mut Rng, name: &str, inputs: &[Tensor], f: &OpFn) {
    let rounded: Vec<Tensor> = inputs.iter().map(|t| t.to_dtype(DType::BF16)).collect();
    let ref_in: Vec<Tensor> = rounded
        .iter()
        .map(|t| t.to_dtype(DType::F32).with_grad())
        .collect();
    let y = f(&ref_in).unwrap_or_else(|e| panic!("{name} in f32: {e}"));
    let w = r.tensor(y.shape(), -1.0, 1.0).to_dtype(DType::BF16);
    let grads = y.mul(&w.to_dtype(DType::F32)).unwrap().sum_all().unwrap();
    let grads = grads.backward().unwrap();
    let y_cpu_bf16 = f(&rounded).unwrap_or_else(|e| panic!("{name} in BF16 on the CPU: {e}"));

    let gpu_in: Vec<Tensor> = rounded
        .iter()
        .map(|t| t.to(GPU).unwrap().with_grad())
        .collect();
    let yg = f(&gpu_in).unwrap_or_else(|e| panic!("{name} in BF16 on CUDA: {e}"));
    assert!(yg.is_cuda(), "{name}: result not on the GPU");
    assert_eq!(yg.dtype(), DType::BF16, "{name}: result dtype");
    let loss = yg.mul(&w.to(GPU).unwrap()).unwrap().sum_all().unwrap();
    let grads_g = loss
        .backward()
        .unwrap_or_else(|e| panic!("{name} backward in BF16 on CUDA: {e}"));

    let got = f32_values(&yg);
    let e = rel_err(&got, &y.to_vec::<f32>().unwrap());
    let e_cpu = rel_err(&got, &f32_values(&y_cpu_bf16));
    println!("{name}: forward rel err {e:.2e} (vs the CPU's BF16 {e_cpu:.2e})");
    assert!(e < TOL_FORWARD, "{name}: forward rel err {e:.3e}");
    assert!(e_cpu < TOL_FORWARD, "{name}: vs the CPU's BF16 {e_cpu:.3e}");
    for (i, (c, g)) in ref_in.iter().zip(&gpu_in).enumerate() {
        let (Some(gc), Some(gg)) = (grads.get(c), grads_g.get(g)) else {
            panic!("{name}: input {i} has no gradient");
        };
        assert!(gg.is_cuda(), "{name}: grad {i} not on the GPU");
        assert_eq!(gg.dtype(), DType::BF16, "{name}: grad {i} dtype");
        let e = rel_err(&f32_values(gg), &gc.to_vec::<f32>().unwrap());
        println!("{name}: grad {i} rel err {e:.2e}");
        assert!(e < TOL_BACKWARD, "{name}: grad {i} rel err {e:.3e}");
    }
}

/// The kernels' rounding cases (ties, NaN payloads, infinities, subnormals), then random bit
/// patterns.
fn awkward(random: usize) -> Vec<f32> {
    let mut v = rounding_cases();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    v.extend((0..random).map(|_| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        f32::from_bits(seed as u32)
    }));
    v
}

fn bits(v: &[bf16]) -> Vec<u16> {
    v.iter().map(|h| h.to_bits()).collect()
}

#[test]
fn conversions_and_copies_on_cuda_are_bit_exact_against_the_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let x = awkward(1 << 16);
    let n = x.len();
    let xt = Tensor::from_vec(x, &[n]).unwrap();
    // narrowing on the device: the CPU's bits, NaN payloads included
    let want = xt.to_dtype(DType::BF16).to_vec::<bf16>().unwrap();
    let narrowed = xt.to(GPU).unwrap().try_to_dtype(DType::BF16).unwrap();
    assert!(narrowed.is_cuda() && narrowed.dtype() == DType::BF16);
    assert_eq!(bits(&narrowed.to_vec::<bf16>().unwrap()), bits(&want));
    // widening every bf16 pattern on the device
    let all: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    let at = Tensor::from_vec(all.clone(), &[256, 256]).unwrap();
    let on_gpu = at.to(GPU).unwrap();
    // the copies keep the dtype and every bit (signalling NaNs too)
    assert_eq!(on_gpu.dtype(), DType::BF16);
    let back = on_gpu.to(Device::Cpu).unwrap();
    assert_eq!(bits(&back.to_vec::<bf16>().unwrap()), bits(&all));
    let wide = on_gpu
        .try_to_dtype(DType::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want: Vec<u32> = at
        .to_dtype(DType::F32)
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(wide.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
    // a strided view: transposed, then narrowed rows
    let view = on_gpu.t().unwrap().narrow(0, 3, 100).unwrap();
    let cpu_view = at.t().unwrap().narrow(0, 3, 100).unwrap();
    let v32 = view
        .try_to_dtype(DType::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let c32 = cpu_view.to_dtype(DType::F32).to_vec::<f32>().unwrap();
    assert_eq!(
        v32.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        c32.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let vf = view.try_to_vec_f64().unwrap();
    let cf = cpu_view.to_vec_f64();
    assert!(vf.iter().zip(&cf).all(|(a, b)| a.to_bits() == b.to_bits()));
    println!("conversions: {n} narrowed, 65536 widened, views and copies bit for bit");
}

#[test]
fn in_place_updates_of_bf16_on_cuda() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("cuda bf16 in place");
    let a = r.tensor(&[5, 7], -1.0, 1.0).to_dtype(DType::BF16);
    let g = a.to(GPU).unwrap();
    g.update_in_place(|s: &mut [bf16]| s.iter_mut().for_each(|v| *v = -*v))
        .unwrap();
    let neg: Vec<u16> = bits(&a.to_vec::<bf16>().unwrap())
        .iter()
        .map(|b| b ^ 0x8000)
        .collect();
    assert_eq!(bits(&g.to_vec::<bf16>().unwrap()), neg);
    assert!(g.update_in_place(|_: &mut [f32]| ()).is_err());
    // assign into rows of a BF16 CUDA tensor (a view at an offset); the other rows keep their bits
    let src = r.tensor(&[2, 7], -1.0, 1.0).to_dtype(DType::BF16);
    let rows = g.narrow(0, 2, 2).unwrap();
    rows.assign(&src.to(GPU).unwrap()).unwrap();
    let got = bits(&g.to_vec::<bf16>().unwrap());
    assert_eq!(&got[14..28], &bits(&src.to_vec::<bf16>().unwrap())[..]);
    assert_eq!(&got[..14], &neg[..14]);
    assert_eq!(&got[28..], &neg[28..]);
}

#[test]
fn bf16_elementwise_reductions_and_rows_on_cuda_match_f32() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("cuda bf16 elementwise");
    let a = r.tensor(&[7, 33, 5], -1.0, 1.0);
    let b = r.tensor(&[33, 1], 0.5, 1.5);
    check(&mut r, "add", &[a.clone(), b.clone()], &|t| t[0].add(&t[1]));
    check(&mut r, "div", &[a.clone(), b.clone()], &|t| t[0].div(&t[1]));
    check(&mut r, "exp", &[a.clone()], &|t| t[0].exp());
    check(&mut r, "gelu", &[a.clone()], &|t| t[0].gelu());
    for dim in 0..3 {
        check(&mut r, &format!("sum dim {dim}"), &[a.clone()], &move |t| {
            t[0].sum(dim, dim == 1)
        });
        check(&mut r, &format!("max dim {dim}"), &[a.clone()], &move |t| {
            t[0].max(dim, dim == 0)
        });
    }
    let x = r.tensor(&[33, 257], -4.0, 4.0);
    let (gamma, beta) = (r.tensor(&[257], 0.5, 1.5), r.tensor(&[257], -1.0, 1.0));
    check(&mut r, "softmax", &[x.clone()], &|t| t[0].softmax());
    check(&mut r, "log_softmax", &[x.clone()], &|t| t[0].log_softmax());
    check(&mut r, "layer_norm", &[x.clone(), gamma, beta], &|t| {
        t[0].layer_norm(&t[1], &t[2], 1e-6)
    });
    check(&mut r, "l2_normalize", &[x], &|t| t[0].l2_normalize(1e-12));
}

#[test]
fn bf16_products_and_attention_on_cuda_match_f32() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("cuda bf16 products");
    let at = r.tensor(&[7, 33], -1.0, 1.0);
    let b = r.tensor(&[7, 257], -1.0, 1.0);
    check(&mut r, "matmul transposed view", &[at, b], &|t| {
        t[0].t()?.matmul(&t[1])
    });
    let ab = r.tensor(&[3, 33, 7], -1.0, 1.0);
    let bb = r.tensor(&[3, 7, 5], -1.0, 1.0);
    check(&mut r, "matmul batched", &[ab, bb], &|t| t[0].matmul(&t[1]));
    let x = r.tensor(&[2, 3, 33], -1.0, 1.0);
    let (w, bias) = (r.tensor(&[17, 33], -1.0, 1.0), r.tensor(&[17], -1.0, 1.0));
    check(&mut r, "linear", &[x, w, bias], &|t| {
        t[0].linear(&t[1], Some(&t[2]))
    });
    let img = r.tensor(&[2, 3, 17, 19], -1.0, 1.0);
    let (kw, kb) = (
        r.tensor(&[5, 3, 4, 4], -1.0, 1.0),
        r.tensor(&[5], -1.0, 1.0),
    );
    check(&mut r, "conv2d patchify", &[img, kw, kb], &|t| {
        t[0].conv2d(&t[1], Some(&t[2]), (4, 4), (0, 0))
    });
    let qkv = r.tensor(&[2, 5, 6, 3 * 2 * 4], -1.0, 1.0);
    let rpb = r.tensor(&[2, 5, 5], -1.0, 1.0);
    check(&mut r, "na2d_qkv", &[qkv, rpb], &|x| {
        x[0].neighborhood_attention_2d_qkv(2, Some(&x[1]), [3, 3], [1, 1], 0.35)
    });
    let s = [2, 33, 2, 5];
    let (q, k, v) = (
        r.tensor(&s, -1.0, 1.0),
        r.tensor(&s, -1.0, 1.0),
        r.tensor(&s, -1.0, 1.0),
    );
    check(&mut r, "attention", &[q, k, v], &|x| {
        x[0].attention(&x[1], &x[2], 0.3)
    });
}

#[test]
fn bf16_views_and_copies_on_cuda_match_f32() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("cuda bf16 views");
    let a = r.tensor(&[4, 7, 33], -1.0, 1.0);
    let b = r.tensor(&[4, 2, 33], -1.0, 1.0);
    check(&mut r, "permute+contiguous", &[a.clone()], &|t| {
        t[0].permute(&[2, 0, 1])?.try_contiguous()
    });
    check(&mut r, "narrow", &[a.clone()], &|t| {
        t[0].narrow(2, 3, 20)?.gelu()
    });
    check(&mut r, "cat", &[a.clone(), b], &|t| {
        Tensor::cat(&[t[0].clone(), t[1].clone()], 1)
    });
    check(&mut r, "index_select", &[a.clone()], &|t| {
        t[0].index_select(1, &[6, 0, 6, 3])
    });
    check(&mut r, "to_dtype f32 and back", &[a], &|t| {
        t[0].try_to_dtype(DType::F32)?
            .exp()?
            .try_to_dtype(DType::BF16)
    });
}

/// Errors that need no GPU: f64 cannot go to CUDA (named before the device is looked for), BF16
/// gets "no CUDA device" without a GPU and a BF16 copy with one; never a panic.
#[test]
fn dtypes_cuda_cannot_hold_are_errors_with_or_without_a_gpu() {
    let e = Tensor::ones(&[2], DType::F64)
        .to(GPU)
        .unwrap_err()
        .to_string();
    assert!(e.contains("F64") && e.contains("cannot go to CUDA"), "{e}");
    match Tensor::ones(&[2, 3], DType::BF16).to(GPU) {
        Ok(t) => {
            assert_eq!(t.dtype(), DType::BF16);
            let e = t.try_to_dtype(DType::F64).unwrap_err().to_string();
            assert!(e.contains("not available on CUDA"), "{e}");
        }
        Err(e) => assert!(e.to_string().contains("no CUDA device"), "{e}"),
    }
}
