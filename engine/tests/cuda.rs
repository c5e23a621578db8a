//! Engine ops on CUDA against the same ops on the CPU: forward values and gradients (through
//! autodiff, loss = sum(y * w) with random w) within a stated relative-norm tolerance, and the
//! errors of mixed devices and of dtypes CUDA does not hold. Without a GPU each test checks the
//! "no CUDA device" error of `Tensor::to` and prints why it skips the rest.

#![allow(clippy::cloned_ref_to_slice_refs)] // the inputs read better as lists

use dinonat_engine::{DType, Device, Tensor};

mod common;
use common::*;

#[test]
fn elementwise_and_reductions_match_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("elementwise");
    let a = r.tensor(&[7, 33, 5], -1.0, 1.0);
    let b = r.tensor(&[33, 1], 0.5, 1.5);
    let pos = r.tensor(&[3, 257], 0.5, 1.5);
    parity(&mut r, "add broadcast", &[a.clone(), b.clone()], &|t| {
        t[0].add(&t[1])
    });
    parity(&mut r, "sub broadcast", &[a.clone(), b.clone()], &|t| {
        t[0].sub(&t[1])
    });
    parity(&mut r, "mul broadcast", &[a.clone(), b.clone()], &|t| {
        t[0].mul(&t[1])
    });
    parity(&mut r, "div broadcast", &[a.clone(), b.clone()], &|t| {
        t[0].div(&t[1])
    });
    parity(&mut r, "affine", &[a.clone()], &|t| t[0].affine(0.5, -2.0));
    parity(&mut r, "exp", &[a.clone()], &|t| t[0].exp());
    parity(&mut r, "log", &[pos.clone()], &|t| t[0].log());
    parity(&mut r, "sqrt", &[pos.clone()], &|t| t[0].sqrt());
    parity(&mut r, "powf", &[pos.clone()], &|t| t[0].powf(1.7));
    parity(&mut r, "gelu", &[a.clone()], &|t| t[0].gelu());
    for dim in 0..3 {
        parity(&mut r, &format!("sum dim {dim}"), &[a.clone()], &move |t| {
            t[0].sum(dim, dim == 1)
        });
    }
    parity(&mut r, "mean", &[a.clone()], &|t| t[0].mean(2, false));
    parity(&mut r, "sum_all", &[a.clone()], &|t| t[0].sum_all());
    parity(&mut r, "mean_all", &[a.clone()], &|t| t[0].mean_all());
}

#[test]
fn softmax_norms_match_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("softmax");
    for shape in [vec![1, 1], vec![3, 7], vec![33, 257], vec![2, 5, 513]] {
        let x = r.tensor(&shape, -4.0, 4.0);
        let c = shape[shape.len() - 1];
        let (gamma, beta) = (r.tensor(&[c], 0.5, 1.5), r.tensor(&[c], -1.0, 1.0));
        parity(&mut r, &format!("softmax {shape:?}"), &[x.clone()], &|t| {
            t[0].softmax()
        });
        parity(
            &mut r,
            &format!("log_softmax {shape:?}"),
            &[x.clone()],
            &|t| t[0].log_softmax(),
        );
        if c > 1 {
            parity(
                &mut r,
                &format!("layer_norm {shape:?}"),
                &[x.clone(), gamma, beta],
                &|t| t[0].layer_norm(&t[1], &t[2], 1e-6),
            );
        }
        parity(
            &mut r,
            &format!("l2_normalize {shape:?}"),
            &[x.clone()],
            &|t| t[0].l2_normalize(1e-12),
        );
    }
}

#[test]
fn matmul_linear_conv_match_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("matmul");
    let a = r.tensor(&[33, 7], -1.0, 1.0);
    let b = r.tensor(&[7, 257], -1.0, 1.0);
    parity(&mut r, "matmul 2d", &[a.clone(), b.clone()], &|t| {
        t[0].matmul(&t[1])
    });
    parity(
        &mut r,
        "matmul rows of a narrowed view",
        &[a.clone(), b.clone()],
        &|t| t[0].narrow(0, 5, 20)?.matmul(&t[1]),
    );
    let at = r.tensor(&[7, 33], -1.0, 1.0);
    parity(&mut r, "matmul transposed view", &[at, b.clone()], &|t| {
        t[0].t()?.matmul(&t[1])
    });
    let ab = r.tensor(&[3, 33, 7], -1.0, 1.0);
    let bb = r.tensor(&[3, 7, 5], -1.0, 1.0);
    parity(&mut r, "matmul batched", &[ab.clone(), bb], &|t| {
        t[0].matmul(&t[1])
    });
    parity(&mut r, "matmul shared b", &[ab.clone(), b.clone()], &|t| {
        t[0].matmul(&t[1])
    });
    let x = r.tensor(&[2, 3, 33], -1.0, 1.0);
    let w = r.tensor(&[17, 33], -1.0, 1.0);
    let bias = r.tensor(&[17], -1.0, 1.0);
    parity(&mut r, "linear", &[x, w, bias], &|t| {
        t[0].linear(&t[1], Some(&t[2]))
    });
    let img = r.tensor(&[2, 3, 17, 19], -1.0, 1.0);
    let kw = r.tensor(&[5, 3, 4, 4], -1.0, 1.0);
    let kb = r.tensor(&[5], -1.0, 1.0);
    parity(&mut r, "conv2d patchify", &[img.clone(), kw, kb], &|t| {
        t[0].conv2d(&t[1], Some(&t[2]), (4, 4), (0, 0))
    });
    let kw3 = r.tensor(&[4, 3, 3, 3], -1.0, 1.0);
    parity(&mut r, "conv2d 3x3 s2 p1", &[img, kw3.clone()], &|t| {
        t[0].conv2d(&t[1], None, (2, 2), (1, 1))
    });
    // Channels last: the CPU's own kernels against CUDA's permutes around the NCHW conv.
    let img_last = r.tensor(&[2, 17, 19, 3], -1.0, 1.0);
    parity(&mut r, "conv2d channels last", &[img_last, kw3], &|t| {
        t[0].conv2d_channels_last(&t[1], None, (2, 2), (1, 1))
    });
}

#[test]
fn views_and_copies_match_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("views");
    let a = r.tensor(&[4, 7, 33], -1.0, 1.0);
    parity(&mut r, "permute+contiguous", &[a.clone()], &|t| {
        Ok(t[0].permute(&[2, 0, 1])?.contiguous())
    });
    parity(&mut r, "narrow", &[a.clone()], &|t| {
        t[0].narrow(2, 3, 20)?.gelu()
    });
    parity(&mut r, "reshape of a view", &[a.clone()], &|t| {
        t[0].transpose(0, 1)?.reshape(&[7, 132])?.softmax()
    });
    parity(&mut r, "split + mul", &[a.clone()], &|t| {
        let p = t[0].split(1, &[3, 4])?;
        p[0].sum(1, true)?.mul(&p[1])
    });
    // A copy there and back is exact.
    let back = a.to(Device::Cuda(0)).unwrap().to(Device::Cpu).unwrap();
    assert_eq!(back.to_vec::<f32>().unwrap(), a.to_vec::<f32>().unwrap());
}

/// The ops the other parity tests reach only indirectly: the scalar shorthands, mean_tokens,
/// sum_to, and the views (chunk, unsqueeze / squeeze, broadcast_to, flatten_all), each followed by
/// arithmetic so their gradients flow through the view's backward on the device.
#[test]
fn scalar_ops_views_and_sum_to_match_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("views");
    let x = r.tensor(&[4, 9, 33], -1.0, 1.0);
    parity(&mut r, "sub_scalar", &[x.clone()], &|t| {
        t[0].sub_scalar(0.3)
    });
    parity(&mut r, "mul_scalar", &[x.clone()], &|t| {
        t[0].mul_scalar(-1.7)
    });
    parity(&mut r, "div_scalar", &[x.clone()], &|t| {
        t[0].div_scalar(3.0)
    });
    parity(&mut r, "neg", &[x.clone()], &|t| t[0].neg());
    parity(&mut r, "mean_tokens", &[x.clone()], &|t| t[0].mean_tokens());
    parity(&mut r, "sum_to [1, 9, 1]", &[x.clone()], &|t| {
        t[0].sum_to(&[1, 9, 1])
    });
    parity(&mut r, "sum_to [33]", &[x.clone()], &|t| t[0].sum_to(&[33]));
    parity(&mut r, "chunk", &[x.clone()], &|t| {
        let c = t[0].chunk(3, 1)?;
        c[0].mul(&c[2])?.add(&c[1])
    });
    let y = r.tensor(&[9, 33], -1.0, 1.0);
    parity(&mut r, "unsqueeze, squeeze", &[y.clone()], &|t| {
        t[0].unsqueeze(1)?.exp()?.squeeze(1)
    });
    parity(&mut r, "broadcast_to", &[y.clone()], &|t| {
        t[0].broadcast_to(&[4, 9, 33])?.contiguous().mul_scalar(2.0)
    });
    parity(&mut r, "flatten_all of a transposed view", &[y], &|t| {
        t[0].t()?.flatten_all()?.exp()
    });
}

/// matmul (batched, a transposed view), linear and conv2d at each GEMM precision, forward and
/// every gradient (the backward runs inside the scope too), against the CPU's f32: within the
/// kernel tests' tolerance of that precision (`GemmPrecision::tolerance`: 1e-5 / 5e-4 / 1e-2 vs
/// f64; never below the f32 parity tolerances 2e-5 / 1e-4). Shapes have m k n >= 4096, where the
/// kernel tests use the base tolerance.
#[test]
fn gemm_precision_is_the_callers_choice() {
    if !gpu_or_skip() {
        return;
    }
    use dinonat_engine::{gemm_precision_scope, GemmPrecision};
    let mut r = Rng::new("precision");
    let (a, b) = (
        r.tensor(&[2, 45, 70], -1.0, 1.0),
        r.tensor(&[2, 45, 33], -1.0, 1.0),
    );
    let (x, w, bias) = (
        r.tensor(&[3, 67, 129], -1.0, 1.0),
        r.tensor(&[65, 129], -1.0, 1.0),
        r.tensor(&[65], -1.0, 1.0),
    );
    let (img, kw) = (
        r.tensor(&[2, 8, 17, 17], -1.0, 1.0),
        r.tensor(&[16, 8, 3, 3], -1.0, 1.0),
    );
    for p in GemmPrecision::ALL {
        let _scope = gemm_precision_scope(p);
        let tol = (
            p.tolerance().max(TOL_FORWARD),
            p.tolerance().max(TOL_BACKWARD),
        );
        let name = p.name();
        parity_within(
            &mut r,
            &format!("{name} matmul batched, A transposed"),
            &[a.clone(), b.clone()],
            &|t| t[0].transpose(1, 2)?.matmul(&t[1]),
            tol,
        );
        parity_within(
            &mut r,
            &format!("{name} linear"),
            &[x.clone(), w.clone(), bias.clone()],
            &|t| t[0].linear(&t[1], Some(&t[2])),
            tol,
        );
        parity_within(
            &mut r,
            &format!("{name} conv2d 3x3 s2 p1"),
            &[img.clone(), kw.clone()],
            &|t| t[0].conv2d(&t[1], None, (2, 2), (1, 1)),
            tol,
        );
    }
}

/// The precision scope without a GPU: the default is FP32 SIMT, scopes nest and restore the
/// previous precision on drop, another thread keeps its own; on the CPU a Tf32 scope leaves the
/// f32 GEMM as it is (bitwise) and a Bf16 scope rounds its operands (values: tests/cpu_bf16_gemm.rs).
#[test]
fn gemm_precision_scopes_nest_and_restore() {
    use dinonat_engine::{cuda_gemm_precision as current, gemm_precision_scope, GemmPrecision};
    let mut r = Rng::new("scope");
    let (a, b) = (
        r.tensor(&[9, 70], -1.0, 1.0),
        r.tensor(&[70, 11], -1.0, 1.0),
    );
    let f32_product = a.matmul(&b).unwrap().to_vec::<f32>().unwrap();
    let same = |got: &[f32]| {
        got.iter()
            .zip(&f32_product)
            .all(|(x, y)| x.to_bits() == y.to_bits())
    };
    assert_eq!(current(), GemmPrecision::Fp32Simt);
    {
        let _outer = gemm_precision_scope(GemmPrecision::Tf32);
        assert_eq!(current(), GemmPrecision::Tf32);
        let got = a.matmul(&b).unwrap().to_vec::<f32>().unwrap();
        assert!(same(&got), "the CPU's matmul changed inside a Tf32 scope");
        {
            let _inner = gemm_precision_scope(GemmPrecision::Bf16);
            assert_eq!(current(), GemmPrecision::Bf16);
            let other = std::thread::spawn(current).join().unwrap();
            assert_eq!(other, GemmPrecision::Fp32Simt, "the scope is per thread");
            let got = a.matmul(&b).unwrap().to_vec::<f32>().unwrap();
            assert!(!same(&got), "the CPU's matmul ignored a Bf16 scope");
        }
        assert_eq!(current(), GemmPrecision::Tf32);
    }
    assert_eq!(current(), GemmPrecision::Fp32Simt);
}

#[test]
fn cat_l2_normalize_drop_path_match_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("cat");
    let (a, b) = (
        r.tensor(&[3, 5, 7], -1.0, 1.0),
        r.tensor(&[3, 2, 7], -1.0, 1.0),
    );
    for dim in [0, 1, 2] {
        let b = match dim {
            0 => r.tensor(&[2, 5, 7], -1.0, 1.0),
            1 => b.clone(),
            _ => r.tensor(&[3, 5, 4], -1.0, 1.0),
        };
        parity(
            &mut r,
            &format!("cat dim {dim}"),
            &[a.clone(), b],
            &move |t| Tensor::cat(&[t[0].clone(), t[1].transpose(0, 0)?], dim),
        );
    }
    let mut x = r.tensor(&[6, 33], -1.0, 1.0);
    x = Tensor::cat(&[x, Tensor::zeros(&[1, 33], DType::F32)], 0).unwrap(); // a zero row
    parity(&mut r, "l2_normalize", &[x], &|t| t[0].l2_normalize(1e-6));
    let x = r.tensor(&[8, 3, 5], -1.0, 1.0);
    parity(&mut r, "drop_path", &[x], &|t| {
        t[0].drop_path(0.5, true, &mut dinonat_engine::Rng::new(7))
    });
}

#[test]
fn assign_and_update_in_place_on_cuda() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("assign");
    let a = r.tensor(&[4, 9], -1.0, 1.0);
    let dst = Tensor::full(&[9, 4], f64::NAN, DType::F32)
        .to(Device::Cuda(0))
        .unwrap();
    let src = a.to(Device::Cuda(0)).unwrap().t().unwrap(); // a strided view
    dst.assign(&src).unwrap();
    let want = a.t().unwrap().contiguous().to_vec::<f32>().unwrap();
    assert_eq!(dst.to_vec::<f32>().unwrap(), want);
    let row = dst.narrow(0, 2, 1).unwrap(); // contiguous at an offset
    row.update_in_place(|s: &mut [f32]| s.iter_mut().for_each(|v| *v = 2.0 * *v + 1.0))
        .unwrap();
    let mut want = want;
    want[8..12].iter_mut().for_each(|v| *v = 2.0 * *v + 1.0);
    assert_eq!(dst.to_vec::<f32>().unwrap(), want);
    let one = dst.narrow(0, 1, 1).unwrap().narrow(1, 3, 1).unwrap(); // a strided element
    assert_eq!(one.item().unwrap(), want[7] as f64);
}

#[test]
fn adamw_and_ema_in_place_match_a_plain_loop() {
    if !gpu_or_skip() {
        return;
    }
    use dinonat_engine::kernels::cuda::optim::AdamWStep;
    let mut r = Rng::new("optim");
    let shape = [33, 257];
    let p0 = r.tensor(&shape, -1.0, 1.0);
    let cuda = |t: &Tensor| t.to(Device::Cuda(0)).unwrap();
    let (p, m, v) = (
        cuda(&p0),
        cuda(&Tensor::zeros(&shape, DType::F32)),
        cuda(&Tensor::zeros(&shape, DType::F32)),
    );
    let mut ep: Vec<f64> = p0.to_vec_f64();
    let (mut em, mut ev) = (vec![0.0f64; ep.len()], vec![0.0f64; ep.len()]);
    for step in 1..=3u64 {
        let g = r.tensor(&shape, -1.0, 1.0);
        let h = AdamWStep {
            lr: 1e-2,
            weight_decay: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step,
        };
        p.cuda_adamw_step(&cuda(&g), &m, &v, &h).unwrap();
        let (bc1, bc2) = (
            1.0 - 0.9f64.powi(step as i32),
            1.0 - 0.999f64.powi(step as i32),
        );
        for (i, gi) in g.to_vec_f64().into_iter().enumerate() {
            ep[i] *= 1.0 - 1e-2f32 as f64 * 0.05f32 as f64;
            em[i] = 0.9f32 as f64 * em[i] + (1.0 - 0.9f32 as f64) * gi;
            ev[i] = 0.999f32 as f64 * ev[i] + (1.0 - 0.999f32 as f64) * gi * gi;
            ep[i] -= 1e-2f32 as f64 * (em[i] / bc1) / ((ev[i] / bc2).sqrt() + 1e-8f32 as f64);
        }
    }
    let got: Vec<f32> = p.to_vec::<f32>().unwrap();
    let exact: Vec<f32> = ep.iter().map(|&x| x as f32).collect();
    let e = rel_err(&got, &exact);
    println!("cuda_adamw_step: 3 steps rel err {e:.2e}");
    assert!(e < 1e-5, "adamw rel err {e:.3e}");
    let s = r.tensor(&shape, -1.0, 1.0);
    let t0 = p.to(Device::Cpu).unwrap();
    p.cuda_ema_update(&cuda(&s), 0.996).unwrap();
    let exact: Vec<f32> = t0
        .to_vec_f64()
        .iter()
        .zip(s.to_vec_f64())
        .map(|(&a, b)| (0.996 * a + 0.004 * b) as f32)
        .collect();
    let e = rel_err(&p.to_vec::<f32>().unwrap(), &exact);
    println!("cuda_ema_update: rel err {e:.2e}");
    assert!(e < 1e-6, "ema rel err {e:.3e}");
    assert!(p.cuda_ema_update(&p, 0.5).is_err());
}

#[test]
fn max_index_select_to_dtype_match_cpu() {
    if !gpu_or_skip() {
        return;
    }
    let mut r = Rng::new("select");
    let a = r.tensor(&[7, 33, 5], -1.0, 1.0);
    for dim in 0..3 {
        parity(&mut r, &format!("max dim {dim}"), &[a.clone()], &move |t| {
            t[0].max(dim, dim == 1)
        });
    }
    // ties on a coarse grid: the first maximum takes the gradient on both devices
    let ties: Vec<f32> = a
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| (v * 2.0).round())
        .collect();
    let ties = Tensor::from_vec(ties, &[7, 33, 5]).unwrap();
    parity(&mut r, "max with ties", &[ties], &|t| t[0].max(1, false));
    parity(&mut r, "max of a transposed view", &[a.clone()], &|t| {
        t[0].transpose(0, 2)?.max(2, false)
    });
    let picks = [4, 0, 4, 2, 6, 6, 1];
    for dim in 0..3 {
        let n = a.shape()[dim];
        let idx: Vec<usize> = picks.iter().map(|&i| i % n).collect();
        parity(
            &mut r,
            &format!("index_select dim {dim}"),
            &[a.clone()],
            &move |t| t[0].index_select(dim, &idx),
        );
    }
    parity(&mut r, "index_select of none", &[a.clone()], &|t| {
        t[0].index_select(1, &[])?.sum_all()?.add_scalar(1.0)
    });
    // to_dtype: f32 is the identity, f64 an error that names the way out (never a panic)
    let g = a.to(Device::Cuda(0)).unwrap();
    let same = g.try_to_dtype(DType::F32).unwrap();
    assert_eq!(same.to_vec::<f32>().unwrap(), a.to_vec::<f32>().unwrap());
    let e = g.try_to_dtype(DType::F64).unwrap_err().to_string();
    println!("{e}");
    assert!(
        e.contains("not available on CUDA") && e.contains(".to(Device::Cpu)"),
        "{e}"
    );
}

#[test]
fn mixed_devices_and_f64_are_errors() {
    if !gpu_or_skip() {
        return;
    }
    let x = Tensor::ones(&[2, 3], DType::F32)
        .to(Device::Cuda(0))
        .unwrap();
    let cpu = Tensor::ones(&[2, 3], DType::F32);
    let e = x.add(&cpu).unwrap_err().to_string();
    assert!(e.contains("different devices"), "{e}");
    let e = x.index_select(0, &[2]).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    let e = Tensor::ones(&[2], DType::F64)
        .to(Device::Cuda(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot go to CUDA"), "{e}");
}

#[test]
fn to_cuda_without_gpu_is_an_error_not_a_panic() {
    // With a GPU this only checks that the copy works.
    let r = Tensor::ones(&[3], DType::F32).to(Device::Cuda(0));
    match r {
        Ok(t) => assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0; 3]),
        Err(e) => assert!(
            e.to_string().contains("no CUDA device: use --device cpu"),
            "{e}"
        ),
    }
}
