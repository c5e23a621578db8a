//! BF16 tensors on the CPU (docs/autodiff.md, "Data types"). Each op on BF16 inputs against the
//! same op in f32 on the same BF16-rounded values: the forward, and every input gradient through
//! autodiff (loss = sum(y * w), w random and BF16-rounded), by relative norm. The gradient of a
//! BF16 leaf must be BF16. Also: the conversions through the Tensor API bit-exact against `half`,
//! f32 accumulation, and the errors of mixed dtypes, BF16 on CUDA and BF16 optimiser steps.
//!
//! Tolerances: a BF16 result is the f32 result rounded once; BF16 keeps 8 significant bits, so
//! one rounding to nearest errs by at most u = 2^-8 = 3.9e-3 relative per element, and over
//! many elements the norm-wise error is a fraction of that (the errors average). The forward is
//! held to u norm-wise; a one-element result rounded twice (mean_all = sum_all, rounded, then
//! scaled and rounded) can err by 2u in the worst case and is held to 2u = 7.8e-3. Gradients go
//! through two to four roundings (dy * w, the op's backward, the sum of a broadcast), norm-wise
//! 2u = 7.8e-3. Softmax and log-softmax backward subtract two nearly equal terms
//! (dx = y (g - <g, y>), dx = g - p sum g), so their error is bounded against the terms, not
//! against dx: per element at most 3 roundings of u times |y| (|g| + <|g|, y>) (softmax) or
//! |g| + p (1 + |log p|) sum |g| (log-softmax, whose p = exp(y) inherits u |y| from y's
//! rounding), held norm-wise to 3u = 1.17e-2 of that scale.

#![allow(clippy::cloned_ref_to_slice_refs)] // the inputs read better as lists

use dinonat_engine::{bf16, pool, DType, Result, Rng as EngineRng, Tensor};

mod common;
use common::{rel_err, Rng};

const TOL_FORWARD: f64 = 3.9e-3;
const TOL_BACKWARD: f64 = 7.8e-3;
const TOL_CANCEL: f64 = 3.0 * TOL_FORWARD;

/// The first-order error scale of input 0's gradient, per element, from the f32 result y and
/// the upstream gradient w (rows of `cols` values), for a backward that cancels.
type GradScale = dyn Fn(&[f32], &[f32], usize) -> Vec<f32>;

type OpFn = dyn Fn(&[Tensor]) -> Result<Tensor>;

fn f32_values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).to_vec::<f32>().unwrap()
}

/// Seeds the f32 buffer pool with NaN buffers of `len`, so an f32 kernel behind the BF16 path
/// that missed an element of its (pooled) output would show (the pool keeps buffers of 1024
/// elements or more; smaller outputs come from the allocator).
fn poison_pool(len: usize) {
    for _ in 0..2 {
        pool::give_f32(vec![f32::NAN; len]);
    }
}

/// `f` on BF16 inputs vs `f` on the same values in f32: y and every input gradient.
fn check(r: &mut Rng, name: &str, inputs: &[Tensor], f: &OpFn) {
    check_within(r, name, inputs, f, TOL_FORWARD)
}

/// [`check`] with the forward held to `tol_forward`.
fn check_within(r: &mut Rng, name: &str, inputs: &[Tensor], f: &OpFn, tol_forward: f64) {
    check_full(r, name, inputs, f, tol_forward, None)
}

/// [`check`] with input 0's gradient held to `TOL_CANCEL` of `scale` instead of to its own norm.
fn check_scaled(r: &mut Rng, name: &str, inputs: &[Tensor], f: &OpFn, scale: &GradScale) {
    check_full(r, name, inputs, f, TOL_FORWARD, Some(scale))
}

fn check_full(
    r: &mut Rng,
    name: &str,
    inputs: &[Tensor],
    f: &OpFn,
    tol_forward: f64,
    scale: Option<&GradScale>,
) {
    let rounded: Vec<Tensor> = inputs.iter().map(|t| t.to_dtype(DType::BF16)).collect();
    let ref_in: Vec<Tensor> = rounded
        .iter()
        .map(|t| t.to_dtype(DType::F32).with_grad())
        .collect();
    let bf_in: Vec<Tensor> = rounded.iter().map(|t| t.with_grad()).collect();

    let y = f(&ref_in).unwrap_or_else(|e| panic!("{name} in f32: {e}"));
    let w = r.tensor(y.shape(), -1.0, 1.0).to_dtype(DType::BF16);
    let loss = y.mul(&w.to_dtype(DType::F32)).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();

    poison_pool(y.numel());
    let yb = f(&bf_in).unwrap_or_else(|e| panic!("{name} in BF16: {e}"));
    assert_eq!(yb.dtype(), DType::BF16, "{name}: result dtype");
    let loss_b = yb.mul(&w).unwrap().sum_all().unwrap();
    let grads_b = loss_b
        .backward()
        .unwrap_or_else(|e| panic!("{name} backward in BF16: {e}"));

    let e = rel_err(&f32_values(&yb), &y.to_vec::<f32>().unwrap());
    println!("{name}: forward rel err {e:.2e}");
    assert!(e < tol_forward, "{name}: forward rel err {e:.3e}");
    for (i, (c, b)) in ref_in.iter().zip(&bf_in).enumerate() {
        let (Some(gc), Some(gb)) = (grads.get(c), grads_b.get(b)) else {
            panic!("{name}: input {i} has no gradient");
        };
        assert_eq!(gb.dtype(), DType::BF16, "{name}: grad {i} dtype");
        let (got, want) = (f32_values(gb), gc.to_vec::<f32>().unwrap());
        if let (0, Some(scale)) = (i, scale) {
            let cols = y.shape()[y.rank() - 1];
            let sc = scale(&y.to_vec::<f32>().unwrap(), &f32_values(&w), cols);
            let e = err_against(&got, &want, &sc);
            println!("{name}: grad 0 err {e:.2e} of its error scale");
            assert!(
                e < TOL_CANCEL,
                "{name}: grad 0 err {e:.3e} of its error scale"
            );
            // Not vacuous: a zero (or absent) gradient would fail against this scale.
            let zero = err_against(&vec![0.0; want.len()], &want, &sc);
            assert!(
                cols == 1 || zero > TOL_CANCEL,
                "{name}: the scale is too loose to tell a zero gradient ({zero:.3e})"
            );
            continue;
        }
        let e = rel_err(&got, &want);
        println!("{name}: grad {i} rel err {e:.2e}");
        assert!(e < TOL_BACKWARD, "{name}: grad {i} rel err {e:.3e}");
    }
}

/// ||got - want|| / ||scale||.
fn err_against(got: &[f32], want: &[f32], scale: &[f32]) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let diff = norm(&mut got.iter().zip(want).map(|(&g, &e)| g as f64 - e as f64));
    diff / norm(&mut scale.iter().map(|&s| s as f64)).max(f64::MIN_POSITIVE)
}

/// softmax: |y_i| (|w_i| + sum_j |w_j| y_j), row by row.
fn softmax_scale(y: &[f32], w: &[f32], cols: usize) -> Vec<f32> {
    y.chunks(cols)
        .zip(w.chunks(cols))
        .flat_map(|(yr, wr)| {
            let s: f32 = yr.iter().zip(wr).map(|(a, b)| a * b.abs()).sum();
            yr.iter().zip(wr).map(move |(a, b)| a.abs() * (b.abs() + s))
        })
        .collect()
}

/// log-softmax: |w_i| + p_i (1 + |y_i|) sum_j |w_j|, p = exp(y), row by row.
fn log_softmax_scale(y: &[f32], w: &[f32], cols: usize) -> Vec<f32> {
    y.chunks(cols)
        .zip(w.chunks(cols))
        .flat_map(|(yr, wr)| {
            let s: f32 = wr.iter().map(|b| b.abs()).sum();
            yr.iter()
                .zip(wr)
                .map(move |(a, b)| b.abs() + a.exp() * (1.0 + a.abs()) * s)
        })
        .collect()
}

#[test]
fn elementwise_and_reductions_in_bf16_match_f32() {
    let mut r = Rng::new("bf16 elementwise");
    let a = r.tensor(&[7, 33, 5], -1.0, 1.0);
    let b = r.tensor(&[33, 1], 0.5, 1.5);
    let pos = r.tensor(&[3, 257], 0.5, 1.5);
    check(&mut r, "add", &[a.clone(), b.clone()], &|t| t[0].add(&t[1]));
    check(&mut r, "sub", &[a.clone(), b.clone()], &|t| t[0].sub(&t[1]));
    check(&mut r, "mul", &[a.clone(), b.clone()], &|t| t[0].mul(&t[1]));
    check(&mut r, "div", &[a.clone(), b.clone()], &|t| t[0].div(&t[1]));
    check(&mut r, "affine", &[a.clone()], &|t| t[0].affine(0.5, -2.0));
    check(&mut r, "exp", &[a.clone()], &|t| t[0].exp());
    check(&mut r, "log", &[pos.clone()], &|t| t[0].log());
    check(&mut r, "sqrt", &[pos.clone()], &|t| t[0].sqrt());
    check(&mut r, "powf", &[pos.clone()], &|t| t[0].powf(1.7));
    check(&mut r, "gelu", &[a.clone()], &|t| t[0].gelu());
    for dim in 0..3 {
        check(&mut r, &format!("sum dim {dim}"), &[a.clone()], &move |t| {
            t[0].sum(dim, dim == 1)
        });
        check(&mut r, &format!("max dim {dim}"), &[a.clone()], &move |t| {
            t[0].max(dim, dim == 0)
        });
    }
    check(&mut r, "mean", &[a.clone()], &|t| t[0].mean(2, false));
    check(&mut r, "sum_all", &[pos.clone()], &|t| t[0].sum_all());
    // one element rounded twice (the sum, then the mean): 2u in the worst case
    let mean_all: &OpFn = &|t| t[0].mean_all();
    check_within(
        &mut r,
        "mean_all",
        &[a.clone()],
        mean_all,
        2.0 * TOL_FORWARD,
    );
    check(&mut r, "to_dtype f32 and back", &[a.clone()], &|t| {
        Ok(t[0].to_dtype(DType::F32).exp()?.to_dtype(t[0].dtype()))
    });
}

#[test]
fn softmax_and_norms_in_bf16_match_f32() {
    let mut r = Rng::new("bf16 softmax");
    for shape in [vec![1, 1], vec![3, 7], vec![33, 257], vec![2, 5, 513]] {
        let x = r.tensor(&shape, -4.0, 4.0);
        let c = shape[shape.len() - 1];
        let (gamma, beta) = (r.tensor(&[c], 0.5, 1.5), r.tensor(&[c], -1.0, 1.0));
        let name = format!("softmax {shape:?}");
        check_scaled(
            &mut r,
            &name,
            &[x.clone()],
            &|t| t[0].softmax(),
            &softmax_scale,
        );
        let name = format!("log_softmax {shape:?}");
        let log_softmax: &OpFn = &|t| t[0].log_softmax();
        check_scaled(&mut r, &name, &[x.clone()], log_softmax, &log_softmax_scale);
        if c > 1 {
            check(
                &mut r,
                &format!("layer_norm {shape:?}"),
                &[x.clone(), gamma, beta],
                &|t| t[0].layer_norm(&t[1], &t[2], 1e-6),
            );
        }
        check(&mut r, &format!("l2_normalize {shape:?}"), &[x], &|t| {
            t[0].l2_normalize(1e-12)
        });
    }
}

#[test]
fn matmul_linear_conv_in_bf16_match_f32() {
    let mut r = Rng::new("bf16 matmul");
    let a = r.tensor(&[33, 7], -1.0, 1.0);
    let b = r.tensor(&[7, 257], -1.0, 1.0);
    check(&mut r, "matmul", &[a.clone(), b.clone()], &|t| {
        t[0].matmul(&t[1])
    });
    let at = r.tensor(&[7, 33], -1.0, 1.0);
    check(&mut r, "matmul transposed view", &[at, b.clone()], &|t| {
        t[0].t()?.matmul(&t[1])
    });
    let ab = r.tensor(&[3, 33, 7], -1.0, 1.0);
    let bb = r.tensor(&[3, 7, 5], -1.0, 1.0);
    check(&mut r, "matmul batched", &[ab.clone(), bb], &|t| {
        t[0].matmul(&t[1])
    });
    check(&mut r, "matmul shared b", &[ab, b], &|t| t[0].matmul(&t[1]));
    let x = r.tensor(&[2, 3, 33], -1.0, 1.0);
    let w = r.tensor(&[17, 33], -1.0, 1.0);
    let bias = r.tensor(&[17], -1.0, 1.0);
    check(&mut r, "linear", &[x, w, bias], &|t| {
        t[0].linear(&t[1], Some(&t[2]))
    });
    let img = r.tensor(&[2, 3, 17, 19], -1.0, 1.0);
    let kw = r.tensor(&[5, 3, 4, 4], -1.0, 1.0);
    let kb = r.tensor(&[5], -1.0, 1.0);
    check(&mut r, "conv2d patchify", &[img.clone(), kw, kb], &|t| {
        t[0].conv2d(&t[1], Some(&t[2]), (4, 4), (0, 0))
    });
    let kw3 = r.tensor(&[4, 3, 3, 3], -1.0, 1.0);
    check(&mut r, "conv2d 3x3 s2 p1", &[img, kw3.clone()], &|t| {
        t[0].conv2d(&t[1], None, (2, 2), (1, 1))
    });
    let img_last = r.tensor(&[2, 17, 19, 3], -1.0, 1.0);
    check(&mut r, "conv2d channels last", &[img_last, kw3], &|t| {
        t[0].conv2d_channels_last(&t[1], None, (2, 2), (1, 1))
    });
}

#[test]
fn attention_in_bf16_matches_f32() {
    let mut r = Rng::new("bf16 attention");
    for (s, kernel, dilation) in [
        ([2, 7, 9, 2, 5], [3, 5], [1, 2]),
        ([1, 1, 1, 3, 7], [1, 1], [1, 1]),
    ] {
        let (q, k, v) = (
            r.tensor(&s, -1.0, 1.0),
            r.tensor(&s, -1.0, 1.0),
            r.tensor(&s, -1.0, 1.0),
        );
        let rpb = r.tensor(&[s[3], 2 * kernel[0] - 1, 2 * kernel[1] - 1], -1.0, 1.0);
        check(&mut r, &format!("na2d {s:?}"), &[q, k, v, rpb], &move |x| {
            x[0].neighborhood_attention_2d(&x[1], &x[2], Some(&x[3]), kernel, dilation, 0.4)
        });
    }
    let qkv = r.tensor(&[2, 5, 6, 3 * 2 * 4], -1.0, 1.0);
    let rpb = r.tensor(&[2, 5, 5], -1.0, 1.0);
    check(&mut r, "na2d_qkv", &[qkv, rpb], &|x| {
        x[0].neighborhood_attention_2d_qkv(2, Some(&x[1]), [3, 3], [1, 1], 0.35)
    });
    for s in [[2, 33, 2, 5], [1, 70, 3, 16]] {
        let (q, k, v) = (
            r.tensor(&s, -1.0, 1.0),
            r.tensor(&s, -1.0, 1.0),
            r.tensor(&s, -1.0, 1.0),
        );
        check(&mut r, &format!("attention {s:?}"), &[q, k, v], &|x| {
            x[0].attention(&x[1], &x[2], 0.3)
        });
    }
    let qkv = r.tensor(&[2, 17, 3 * 2 * 8], -1.0, 1.0);
    check(&mut r, "attention_qkv", &[qkv], &|x| {
        x[0].attention_qkv(2, 0.3)
    });
}

#[test]
fn views_and_copies_in_bf16_match_f32() {
    let mut r = Rng::new("bf16 views");
    let a = r.tensor(&[4, 7, 33], -1.0, 1.0);
    let b = r.tensor(&[4, 2, 33], -1.0, 1.0);
    check(&mut r, "permute+contiguous", &[a.clone()], &|t| {
        Ok(t[0].permute(&[2, 0, 1])?.contiguous())
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
    check(&mut r, "drop_path", &[a], &|t| {
        t[0].drop_path(0.5, true, &mut EngineRng::new(7))
    });
}

#[test]
fn bf16_sums_accumulate_in_f32() {
    // 4097 ones: a BF16 accumulator stalls at 256 (256 + 1 rounds back to 256); an f32 one
    // reaches 4097, which rounds to 4096 once.
    let ones = Tensor::ones(&[4097], DType::BF16);
    assert_eq!(ones.sum_all().unwrap().to_vec_f64(), vec![4096.0]);
    assert_eq!(
        ones.reshape(&[1, 4097])
            .unwrap()
            .sum(1, false)
            .unwrap()
            .to_vec_f64(),
        vec![4096.0]
    );
    let col = Tensor::ones(&[4097, 1], DType::BF16);
    let dot = ones.reshape(&[1, 4097]).unwrap().matmul(&col).unwrap();
    assert_eq!(dot.dtype(), DType::BF16);
    assert_eq!(dot.to_vec_f64(), vec![4096.0]);
}

/// Values where rounding goes wrong if done carelessly: NaN, infinities, subnormals, ties.
fn awkward() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x0001_8000),
        f32::from_bits(0x007F_FFFF),
        f32::from_bits(0x7F7F_8000),
        f32::from_bits(0x7F7F_7FFF),
    ];
    for low in [0x7FFF, 0x8000, 0x8001, 0x1_8000] {
        v.push(f32::from_bits(0x3F80_0000 + low));
        v.push(f32::from_bits(0xC2F0_0000 + low));
    }
    let mut r = Rng::new("bf16 awkward");
    v.extend((0..1000).map(|_| r.uniform() * 1e3));
    v
}

#[test]
fn to_dtype_rounds_to_nearest_even_as_half_does() {
    let x = awkward();
    let n = x.len();
    let t = Tensor::from_slice(&x, &[n]).unwrap();
    let b = t.to_dtype(DType::BF16);
    assert_eq!(b.dtype(), DType::BF16);
    let got = b.to_vec::<bf16>().unwrap();
    for (&v, g) in x.iter().zip(&got) {
        assert_eq!(g.to_bits(), bf16::from_f32(v).to_bits(), "{v:e}");
    }
    // from f64 (these values are f32, so direct rounding equals f32 rounding)
    let from64 = t
        .to_dtype(DType::F64)
        .to_dtype(DType::BF16)
        .to_vec::<bf16>()
        .unwrap();
    for (&v, g) in x.iter().zip(&from64) {
        match v.is_nan() {
            true => assert!(g.is_nan()),
            false => assert_eq!(g.to_bits(), bf16::from_f32(v).to_bits(), "{v:e}"),
        }
    }
    // back up: exact
    let up32 = b.to_dtype(DType::F32).to_vec::<f32>().unwrap();
    let up64 = b.to_dtype(DType::F64).to_vec::<f64>().unwrap();
    for ((g, u), w) in got.iter().zip(&up32).zip(&up64) {
        assert_eq!(u.to_bits(), g.to_f32().to_bits());
        assert!(g.is_nan() && w.is_nan() || g.to_f64() == *w);
    }
    // the tensor API: BF16 tensors from values, full, random normals, strided views
    let v = Tensor::from_vec(got.clone(), &[n]).unwrap();
    assert_eq!(v.dtype(), DType::BF16);
    assert_eq!(
        Tensor::full(&[3], 1.00390625, DType::BF16).to_vec_f64(),
        vec![1.0; 3]
    );
    let z = EngineRng::new(3).normal(&[4, 6], 0.0, 1.0, DType::BF16);
    let zt = z.t().unwrap().contiguous().to_vec::<bf16>().unwrap();
    let zv = z.to_vec::<bf16>().unwrap();
    assert_eq!(zt[1], zv[6]);
    assert_eq!(DType::BF16.size_in_bytes(), 2);
}

#[test]
fn bf16_errors_name_the_problem() {
    let a = Tensor::ones(&[2, 3], DType::BF16);
    let f = Tensor::ones(&[2, 3], DType::F32);
    let e = a.add(&f).unwrap_err().to_string();
    assert!(e.contains("BF16") && e.contains("F32"), "{e}");
    // BF16 goes to CUDA as BF16 (tests/cuda_bf16.rs); without a GPU: "no CUDA device"
    match a.to(dinonat_engine::Device::Cuda(0)) {
        Ok(g) => assert_eq!(g.dtype(), DType::BF16),
        Err(e) => assert!(e.to_string().contains("no CUDA device"), "{e}"),
    }
    // optimisers keep f32 master weights: a BF16 parameter is refused with the recipe
    let p = Tensor::parameter("p", &a);
    let grads = p.sum_all().unwrap().backward().unwrap();
    let store_groups = vec![dinonat_engine::optim::ParamGroup {
        name: "g".into(),
        params: vec![("p".into(), p.clone())],
        lr_scale: 1.0,
        weight_decay_scale: 0.0,
    }];
    let mut opt = dinonat_engine::optim::AdamW::new(store_groups);
    let e = opt.step(&grads, 1e-3, 0.0).unwrap_err().to_string();
    assert!(e.contains("BF16") && e.contains("to_dtype"), "{e}");
}

#[test]
fn f32_master_weights_get_f32_gradients_through_a_bf16_forward() {
    let mut r = Rng::new("bf16 master");
    let w = Tensor::parameter("w", &r.tensor(&[17, 33], -1.0, 1.0));
    let x = r.tensor(&[5, 33], -1.0, 1.0).to_dtype(DType::BF16);
    let y = x.linear(&w.to_dtype(DType::BF16), None).unwrap();
    assert_eq!(y.dtype(), DType::BF16);
    let grads = y.sum_all().unwrap().backward().unwrap();
    let g = grads.get(&w).unwrap();
    assert_eq!(g.dtype(), DType::F32);
    // dW = dy^T x with dy = 1: the column sums of x (BF16-rounded once)
    let xs = x
        .to_dtype(DType::F32)
        .sum(0, false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let gw = g.to_vec::<f32>().unwrap();
    for (i, row) in gw.chunks(33).enumerate() {
        let e = rel_err(row, &xs);
        assert!(e < 4e-3, "row {i}: rel err {e:.2e}");
    }
}
