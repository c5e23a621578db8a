//! The attention ops (engine/src/ops/attention.rs, neighborhood_attention.rs): gradient checks in
//! f64 (tolerance in engine/src/gradcheck.rs), NA with a window covering the grid against full
//! attention, f32 against f64, error messages for bad input, thread-count determinism.

#![allow(clippy::cloned_ref_to_slice_refs)]

use dinonat_engine::gradcheck::gradcheck;
use dinonat_engine::{DType, Result, Rng, Tensor};

fn randn(seed: u64, shape: &[usize], dtype: DType) -> Tensor {
    Rng::new(seed).normal(shape, 0.0, 1.0, dtype)
}

fn check(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    match gradcheck(f, inputs) {
        Ok(err) => assert!(err < 1e-5, "{name}: relative error {err}"),
        Err(msg) => panic!("{name}: {msg}"),
    }
}

/// (label, [batch, H, W, heads, head_dim], kernel, dilation)
type NaCase = (&'static str, [usize; 5], [usize; 2], [usize; 2]);

const NA_CASES: [NaCase; 5] = [
    ("odd kernel", [1, 5, 6, 2, 3], [3, 3], [1, 1]),
    ("even kernel", [1, 5, 5, 1, 2], [2, 4], [1, 1]),
    ("dilation", [1, 7, 6, 1, 2], [3, 3], [2, 2]),
    ("kernel > grid", [2, 3, 4, 1, 2], [5, 5], [1, 1]),
    ("non-square, mixed", [1, 4, 9, 2, 2], [3, 5], [1, 2]),
];

fn rpb_shape(heads: usize, kernel: [usize; 2]) -> [usize; 3] {
    [heads, 2 * kernel[0] - 1, 2 * kernel[1] - 1]
}

#[test]
fn neighborhood_attention_gradients_q_k_v_rpb() {
    for (i, (label, s, kernel, dilation)) in NA_CASES.into_iter().enumerate() {
        let seed = 10 * i as u64;
        let (q, k, v) = (
            randn(seed, &s, DType::F64),
            randn(seed + 1, &s, DType::F64),
            randn(seed + 2, &s, DType::F64),
        );
        let rpb = randn(seed + 3, &rpb_shape(s[3], kernel), DType::F64);
        let scale = 0.7;
        check(
            &format!("na {label} with rpb"),
            |x| x[0].neighborhood_attention_2d(&x[1], &x[2], Some(&x[3]), kernel, dilation, scale),
            &[q.clone(), k.clone(), v.clone(), rpb],
        );
        check(
            &format!("na {label} without rpb"),
            |x| x[0].neighborhood_attention_2d(&x[1], &x[2], None, kernel, dilation, scale),
            &[q, k, v],
        );
    }
}

#[test]
fn neighborhood_attention_fused_qkv_gradients() {
    let (heads, d, kernel) = (2, 2, [3, 2]);
    let qkv = randn(5, &[1, 4, 5, 3 * heads * d], DType::F64);
    let rpb = randn(6, &rpb_shape(heads, kernel), DType::F64);
    check(
        "na qkv",
        |x| x[0].neighborhood_attention_2d_qkv(heads, Some(&x[1]), kernel, [1, 2], 0.5),
        &[qkv, rpb],
    );
}

#[test]
fn full_attention_gradients() {
    let s = [2, 5, 2, 3];
    let (q, k, v) = (
        randn(1, &s, DType::F64),
        randn(2, &s, DType::F64),
        randn(3, &s, DType::F64),
    );
    check(
        "attention",
        |x| x[0].attention(&x[1], &x[2], 0.6),
        &[q, k, v],
    );
    let qkv = randn(4, &[1, 6, 3 * 2 * 2], DType::F64);
    check("attention qkv", |x| x[0].attention_qkv(2, 0.6), &[qkv]);
}

fn max_rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64(), b.to_vec_f64());
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() / scale))
}

/// Output and dq, dk, dv of `f` under a fixed random output weighting.
fn value_and_grads(
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    inputs: [&Tensor; 3],
) -> (Tensor, Vec<Tensor>) {
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.with_grad()).collect();
    let out = f(&leaves[0], &leaves[1], &leaves[2]).unwrap();
    let w = randn(99, out.shape(), out.dtype());
    let grads = out.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    let g = leaves
        .iter()
        .map(|l| grads.get(l).unwrap().clone())
        .collect();
    (out.detach(), g)
}

#[test]
fn neighborhood_attention_with_window_over_the_grid_is_full_attention() {
    // relative error < 1e-5 in f32, outputs and gradients
    let s = [2, 5, 7, 2, 8];
    let (q, k, v) = (
        randn(1, &s, DType::F32),
        randn(2, &s, DType::F32),
        randn(3, &s, DType::F32),
    );
    let scale = 1.0 / 8f64.sqrt();
    for kernel in [[5, 7], [9, 8]] {
        let (na, na_g) = value_and_grads(
            |q, k, v| q.neighborhood_attention_2d(k, v, None, kernel, [1, 1], scale),
            [&q, &k, &v],
        );
        let tokens = [2, 35, 2, 8];
        let (full, full_g) = value_and_grads(
            |q, k, v| {
                q.reshape(&tokens)?
                    .attention(&k.reshape(&tokens)?, &v.reshape(&tokens)?, scale)?
                    .reshape(&s)
            },
            [&q, &k, &v],
        );
        let e = max_rel_err(&na, &full);
        assert!(e < 1e-5, "kernel {kernel:?}: output rel err {e}");
        for (name, a, b) in [("dq", 0, 0), ("dk", 1, 1), ("dv", 2, 2)] {
            let e = max_rel_err(&na_g[a], &full_g[b]);
            assert!(e < 1e-5, "kernel {kernel:?}: {name} rel err {e}");
        }
    }
}

#[test]
fn f32_and_f64_agree() {
    // fast f32 kernels against the f64 references: relative error < 1e-5 (of the largest value)
    let s = [2, 9, 11, 2, 16];
    let kernel = [5, 5];
    let make = |dtype| {
        (
            randn(1, &s, dtype),
            randn(2, &s, dtype),
            randn(3, &s, dtype),
            randn(4, &rpb_shape(2, kernel), dtype),
        )
    };
    let (q32, k32, v32, r32) = make(DType::F32);
    let (q64, k64, v64, r64) = make(DType::F64);
    let na32 = |r: Tensor| {
        move |q: &Tensor, k: &Tensor, v: &Tensor| {
            q.neighborhood_attention_2d(k, v, Some(&r), kernel, [1, 2], 0.25)
        }
    };
    let (o32, g32) = value_and_grads(na32(r32), [&q32, &k32, &v32]);
    let (o64, g64) = value_and_grads(na32(r64), [&q64, &k64, &v64]);
    assert!(max_rel_err(&o32, &o64) < 1e-5, "na out");
    for i in 0..3 {
        let e = max_rel_err(&g32[i], &g64[i]);
        assert!(e < 1e-5, "na grad {i}: {e}");
    }
    let t = [2, 99, 2, 16];
    let full = |q: &Tensor, k: &Tensor, v: &Tensor| {
        q.reshape(&t)?
            .attention(&k.reshape(&t)?, &v.reshape(&t)?, 0.25)
    };
    let (o32, g32) = value_and_grads(full, [&q32, &k32, &v32]);
    let (o64, g64) = value_and_grads(full, [&q64, &k64, &v64]);
    assert!(max_rel_err(&o32, &o64) < 1e-5, "full out");
    for i in 0..3 {
        let e = max_rel_err(&g32[i], &g64[i]);
        assert!(e < 1e-5, "full grad {i}: {e}");
    }
}

#[test]
fn views_are_read_in_place_and_match_copies() {
    // q, k, v as views into one [B, H, W, 3, heads, d] tensor, the fused variant on the same
    // numbers, and a permuted (head_dim not contiguous) input that needs a copy: all equal.
    let (b, h, w, heads, d) = (2, 6, 5, 2, 4);
    let kernel = [3, 3];
    let qkv = randn(7, &[b, h, w, 3 * heads * d], DType::F64);
    let rpb = randn(8, &rpb_shape(heads, kernel), DType::F64);
    let parts = qkv.reshape(&[b, h, w, 3, heads, d]).unwrap();
    let part = |i| parts.narrow(3, i, 1).unwrap().squeeze(3).unwrap();
    let (q, k, v) = (part(0), part(1), part(2));
    let split = q
        .neighborhood_attention_2d(&k, &v, Some(&rpb), kernel, [1, 1], 0.5)
        .unwrap();
    let fused = qkv
        .neighborhood_attention_2d_qkv(heads, Some(&rpb), kernel, [1, 1], 0.5)
        .unwrap();
    assert_eq!(
        split.reshape(&[b, h, w, heads * d]).unwrap().to_vec_f64(),
        fused.to_vec_f64()
    );
    let qt = q
        .contiguous()
        .permute(&[0, 1, 2, 4, 3])
        .unwrap()
        .contiguous()
        .permute(&[0, 1, 2, 4, 3])
        .unwrap();
    assert!(!qt.is_contiguous());
    let copied = qt
        .neighborhood_attention_2d(&k, &v, Some(&rpb), kernel, [1, 1], 0.5)
        .unwrap();
    assert_eq!(copied.to_vec_f64(), split.to_vec_f64());
}

fn message(r: Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got {t:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_input_is_an_error_naming_the_argument() {
    let s = [1, 4, 4, 2, 3];
    let q = randn(1, &s, DType::F32);
    let k_bad = randn(2, &[1, 4, 4, 2, 4], DType::F32);
    let rpb = randn(3, &[2, 3, 3], DType::F32);
    let na = |k: &Tensor, rpb: Option<&Tensor>, kernel, dilation| {
        message(q.neighborhood_attention_2d(k, &q, rpb, kernel, dilation, 0.5))
    };
    let m = na(&k_bad, None, [3, 3], [1, 1]);
    assert!(
        m.contains("k must have the shape of q, [1, 4, 4, 2, 3]"),
        "{m}"
    );
    let m = message(q.neighborhood_attention_2d(&q, &k_bad, None, [3, 3], [1, 1], 0.5));
    assert!(m.contains("v must have the shape of q"), "{m}");
    let m = na(&q, None, [0, 3], [1, 1]);
    assert!(m.contains("kernel[0] must be >= 1"), "{m}");
    let m = na(&q, None, [3, 3], [1, 0]);
    assert!(m.contains("dilation[1] must be >= 1"), "{m}");
    let m = na(&q, Some(&rpb), [3, 3], [1, 1]);
    assert!(m.contains("rpb must have shape [2, 5, 5]"), "{m}");
    let m = message(
        q.reshape(&[1, 4, 4, 6])
            .unwrap()
            .neighborhood_attention_2d_qkv(4, None, [3, 3], [1, 1], 0.5),
    );
    assert!(
        m.contains("qkv channels 6 must be 3 * heads * head_dim"),
        "{m}"
    );
    let m = message(q.neighborhood_attention_2d(&q, &q, None, [3, 3], [1, 1], f64::NAN));
    assert!(m.contains("scale must be finite"), "{m}");
    let q64 = randn(1, &s, DType::F64);
    let m = message(q.neighborhood_attention_2d(&q64, &q, None, [3, 3], [1, 1], 0.5));
    assert!(m.contains("dtype mismatch"), "{m}");

    let t = randn(4, &[1, 5, 2, 3], DType::F32);
    let m = message(t.attention(&t.reshape(&[1, 5, 3, 2]).unwrap(), &t, 0.5));
    assert!(
        m.contains("k must have the shape of q, [1, 5, 2, 3]"),
        "{m}"
    );
    let m = message(t.reshape(&[1, 5, 6]).unwrap().attention(&t, &t, 0.5));
    assert!(
        m.contains("q must be [batch, N, heads, head_dim] (rank 4)"),
        "{m}"
    );
    let m = message(t.reshape(&[1, 5, 6]).unwrap().attention_qkv(4, 0.5));
    assert!(
        m.contains("qkv channels 6 must be 3 * heads * head_dim"),
        "{m}"
    );
    let m = message(t.reshape(&[1, 5, 6]).unwrap().attention_qkv(0, 0.5));
    assert!(m.contains("heads must be >= 1"), "{m}");
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn results_are_bitwise_identical_for_1_and_2_threads() {
    let s = [2, 14, 15, 2, 32];
    let kernel = [7, 7];
    let (q, k, v) = (
        randn(1, &s, DType::F32),
        randn(2, &s, DType::F32),
        randn(3, &s, DType::F32),
    );
    let rpb = randn(4, &rpb_shape(2, kernel), DType::F32);
    let run = || {
        let rpb_leaf = rpb.with_grad();
        let (na, mut g) = value_and_grads(
            |q, k, v| q.neighborhood_attention_2d(k, v, Some(&rpb_leaf), kernel, [1, 1], 0.2),
            [&q, &k, &v],
        );
        let t = [2, 210, 2, 32];
        let (full, g_full) = value_and_grads(
            |q, k, v| {
                q.reshape(&t)?
                    .attention(&k.reshape(&t)?, &v.reshape(&t)?, 0.2)
            },
            [&q, &k, &v],
        );
        g.extend(g_full);
        let mut all = vec![na.to_vec::<f32>().unwrap(), full.to_vec::<f32>().unwrap()];
        all.extend(g.iter().map(|t| t.to_vec::<f32>().unwrap()));
        let leaf = rpb_leaf.clone();
        let out = q
            .neighborhood_attention_2d(&k, &v, Some(&leaf), kernel, [1, 1], 0.2)
            .unwrap();
        let grads = out.sum_all().unwrap().backward().unwrap();
        all.push(grads.get(&leaf).unwrap().to_vec::<f32>().unwrap());
        all
    };
    let one = in_pool(1, run);
    let two = in_pool(2, run);
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "result {i} differs between 1 and 2 threads");
    }
}

#[test]
fn fast_kernels_read_any_strided_view() {
    // f32: narrow views of a fused buffer, and spatially transposed views (row stride < col
    // stride), give the same bits as contiguous copies, forward and backward.
    let (b, h, w, heads, d) = (2, 9, 7, 2, 16);
    let kernel = [5, 3];
    let rpb = randn(8, &rpb_shape(heads, kernel), DType::F32);
    let qkv = randn(7, &[b, w, h, 3, heads, d], DType::F32);
    let part = |i| {
        qkv.narrow(3, i, 1)
            .unwrap()
            .squeeze(3)
            .unwrap()
            .permute(&[0, 2, 1, 3, 4])
            .unwrap()
    };
    let (q, k, v) = (part(0), part(1), part(2));
    assert!(!q.is_contiguous());
    let na = |q: &Tensor, k: &Tensor, v: &Tensor| {
        q.neighborhood_attention_2d(k, v, Some(&rpb), kernel, [1, 2], 0.3)
    };
    let (o1, g1) = value_and_grads(na, [&q, &k, &v]);
    let copies = [q.contiguous(), k.contiguous(), v.contiguous()];
    let (o2, g2) = value_and_grads(na, [&copies[0], &copies[1], &copies[2]]);
    assert_eq!(o1.to_vec::<f32>().unwrap(), o2.to_vec::<f32>().unwrap());
    for (a, c) in g1.iter().zip(&g2) {
        assert_eq!(a.to_vec::<f32>().unwrap(), c.to_vec::<f32>().unwrap());
    }
    // full attention on [B, N, heads, d] views of the same buffer against the fused variant
    let parts = qkv.reshape(&[b, w * h, 3, heads, d]).unwrap();
    let view = |i| parts.narrow(2, i, 1).unwrap().squeeze(2).unwrap();
    let split = view(0).attention(&view(1), &view(2), 0.3).unwrap();
    let fused = qkv
        .reshape(&[b, w * h, 3 * heads * d])
        .unwrap()
        .attention_qkv(heads, 0.3)
        .unwrap();
    assert_eq!(
        split
            .reshape(&[b, w * h, heads * d])
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        fused.to_vec::<f32>().unwrap()
    );
}
