//! A gradient check (f64, central differences, tolerance in engine/src/gradcheck.rs) for every op
//! and for composite graphs.

// `&[x.clone()]` reads better than `std::slice::from_ref(&x)` in a list of checks.
#![allow(clippy::cloned_ref_to_slice_refs)]

use dinonat_engine::gradcheck::gradcheck;
use dinonat_engine::{DType, Rng, Tensor};

fn randn(seed: u64, shape: &[usize]) -> Tensor {
    Rng::new(seed).normal(shape, 0.0, 1.0, DType::F64)
}
fn positive(seed: u64, shape: &[usize]) -> Tensor {
    Rng::new(seed).uniform(shape, 0.5, 2.0, DType::F64)
}

fn check(name: &str, f: impl Fn(&[Tensor]) -> dinonat_engine::Result<Tensor>, inputs: &[Tensor]) {
    match gradcheck(f, inputs) {
        Ok(err) => assert!(err < 1e-5, "{name}: relative error {err}"),
        Err(msg) => panic!("{name}: {msg}"),
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    let a = randn(1, &[2, 3, 4]);
    for (shape_b, label) in [
        (vec![2, 3, 4], "same"),
        (vec![4], "suffix"),
        (vec![3, 1], "size-1"),
        (vec![2, 1, 1], "row"),
        (vec![2, 3, 1], "per-row"),
    ] {
        let b = positive(2, &shape_b);
        check(
            &format!("add {label}"),
            |x| x[0].add(&x[1]),
            &[a.clone(), b.clone()],
        );
        check(
            &format!("sub {label}"),
            |x| x[0].sub(&x[1]),
            &[a.clone(), b.clone()],
        );
        check(
            &format!("mul {label}"),
            |x| x[0].mul(&x[1]),
            &[a.clone(), b.clone()],
        );
        check(
            &format!("div {label}"),
            |x| x[0].div(&x[1]),
            &[a.clone(), b.clone()],
        );
        // the broadcast operand on the left
        check(
            &format!("mul {label} reversed"),
            |x| x[1].mul(&x[0]),
            &[a.clone(), b.clone()],
        );
    }
    check("affine", |x| x[0].affine(1.5, -0.25), &[a.clone()]);
    check("neg", |x| x[0].neg(), &[a.clone()]);
    check(
        "scalars",
        |x| {
            x[0].add_scalar(0.5)?
                .sub_scalar(2.0)?
                .mul_scalar(3.0)?
                .div_scalar(4.0)
        },
        &[a.clone()],
    );
    // a constant operand (no grad) on either side
    let c = Tensor::full(&[4], 2.0, DType::F64);
    check("sub constant", |x| c.sub(&x[0])?.div(&c), &[a.clone()]);
}

#[test]
fn unary_ops() {
    let x = randn(3, &[3, 5]);
    let p = positive(4, &[3, 5]);
    check("exp", |t| t[0].exp(), &[x.clone()]);
    check("log", |t| t[0].log(), &[p.clone()]);
    check("sqrt", |t| t[0].sqrt(), &[p.clone()]);
    check("powf", |t| t[0].powf(2.5), &[p.clone()]);
    check("gelu", |t| t[0].gelu(), &[x.clone()]);
}

#[test]
fn reductions() {
    let x = randn(5, &[2, 3, 4]);
    for dim in 0..3 {
        for keepdim in [false, true] {
            check("sum", |t| t[0].sum(dim, keepdim), &[x.clone()]);
            check("mean", |t| t[0].mean(dim, keepdim), &[x.clone()]);
            check("max", |t| t[0].max(dim, keepdim), &[x.clone()]);
        }
    }
    check("sum_all", |t| t[0].sum_all(), &[x.clone()]);
    check("mean_all", |t| t[0].mean_all(), &[x.clone()]);
    check("mean_tokens", |t| t[0].mean_tokens(), &[x.clone()]);
}

#[test]
fn matmul_cases() {
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![3, 4], vec![4, 5]),
        (vec![2, 3, 4], vec![2, 4, 5]),
        (vec![2, 3, 4], vec![4, 5]),          // shared right operand
        (vec![3, 4], vec![2, 4, 5]),          // shared left operand
        (vec![2, 1, 3, 4], vec![1, 3, 4, 2]), // broadcast batch dims
    ];
    for (sa, sb) in cases {
        let (a, b) = (randn(6, &sa), randn(7, &sb));
        check(
            &format!("matmul {sa:?} {sb:?}"),
            |x| x[0].matmul(&x[1]),
            &[a, b],
        );
    }
    // transposed operands are strided views, not copies
    let (a, b) = (randn(8, &[4, 3]), randn(9, &[5, 4]));
    check(
        "matmul of transposes",
        |x| x[0].t()?.matmul(&x[1].t()?),
        &[a, b],
    );
    // batch dims that cannot merge into one stride (a permuted batch) take the copy path
    let (a, b) = (randn(37, &[3, 2, 4, 5]), randn(38, &[2, 3, 5, 2]));
    check(
        "matmul of a permuted batch",
        |x| x[0].permute(&[1, 0, 2, 3])?.matmul(&x[1]),
        &[a, b],
    );
    // attention on a fused QKV projection: q, k are strided views whose batch dims (B, H) do not
    // merge; the matmul loops over B instead of copying
    let qkv = randn(39, &[2, 5, 3 * 3 * 2]); // [B, N, 3 * H * d], H = 3, d = 2
    check(
        "q k^T from a fused qkv",
        |x| {
            let heads = x[0].reshape(&[2, 5, 3, 3, 2])?.permute(&[2, 0, 3, 1, 4])?; // [3, B, H, N, d]
            let q = heads.narrow(0, 0, 1)?.squeeze(0)?;
            let k = heads.narrow(0, 1, 1)?.squeeze(0)?;
            let v = heads.narrow(0, 2, 1)?.squeeze(0)?;
            q.matmul(&k.t()?)?.softmax()?.matmul(&v)
        },
        &[qkv],
    );
    let q = randn(10, &[2, 3, 4]);
    check("q k^T batched", |x| x[0].matmul(&x[0].t()?), &[q]);
}

#[test]
fn linear_with_and_without_bias() {
    let (x, w, b) = (randn(11, &[2, 3, 4]), randn(12, &[5, 4]), randn(13, &[5]));
    check(
        "linear",
        |t| t[0].linear(&t[1], Some(&t[2])),
        &[x.clone(), w.clone(), b],
    );
    check(
        "linear no bias",
        |t| t[0].linear(&t[1], None),
        &[x.clone(), w.clone()],
    );
    // a permuted (non-mergeable) input
    check(
        "linear of a permuted input",
        |t| t[0].permute(&[1, 0, 2])?.linear(&t[1], None),
        &[x, w],
    );
}

/// Channels last: x [N, H, W, C] with the NCHW weight; stride 2 with padding (the NAT's
/// downsampler), stride 1, and no bias with an uneven stride.
#[test]
fn conv2d_channels_last_cases() {
    let x = randn(23, &[2, 5, 4, 3]);
    let w = randn(24, &[4, 3, 3, 2]);
    let b = randn(25, &[4]);
    check(
        "conv2d channels last stride 2 pad 1",
        |t| t[0].conv2d_channels_last(&t[1], Some(&t[2]), (2, 2), (1, 1)),
        &[x.clone(), w.clone(), b.clone()],
    );
    check(
        "conv2d channels last stride 1 no pad",
        |t| t[0].conv2d_channels_last(&t[1], Some(&t[2]), (1, 1), (0, 0)),
        &[x.clone(), w.clone(), b],
    );
    check(
        "conv2d channels last no bias",
        |t| t[0].conv2d_channels_last(&t[1], None, (2, 1), (1, 0)),
        &[x, w],
    );
}

#[test]
fn softmax_layernorm_l2() {
    let x = randn(14, &[2, 3, 5]);
    check("softmax", |t| t[0].softmax(), &[x.clone()]);
    check("log_softmax", |t| t[0].log_softmax(), &[x.clone()]);
    check(
        "softmax of a transposed view",
        |t| t[0].transpose(1, 2)?.softmax(),
        &[x.clone()],
    );
    let (g, b) = (randn(15, &[5]), randn(16, &[5]));
    check(
        "layer_norm",
        |t| t[0].layer_norm(&t[1], &t[2], 1e-5),
        &[x.clone(), g, b],
    );
    check("l2_normalize", |t| t[0].l2_normalize(1e-12), &[x]);
}

#[test]
fn shape_ops() {
    let x = randn(17, &[2, 3, 4]);
    check("reshape", |t| t[0].reshape(&[6, 4]), &[x.clone()]);
    check("permute", |t| t[0].permute(&[2, 0, 1]), &[x.clone()]);
    check(
        "permute then reshape (copy)",
        |t| t[0].permute(&[2, 0, 1])?.reshape(&[4, 6]),
        &[x.clone()],
    );
    check("narrow", |t| t[0].narrow(2, 1, 2), &[x.clone()]);
    check("transpose", |t| t[0].transpose(0, 2), &[x.clone()]);
    check("flatten_all", |t| t[0].flatten_all(), &[x.clone()]);
    check(
        "chunk",
        |t| {
            let parts = t[0].chunk(2, 2)?;
            parts[0].div(&parts[1].exp()?)
        },
        &[x.clone()],
    );
    check(
        "split (fused qkv)",
        |t| {
            let parts = t[0].split(2, &[1, 2, 1])?;
            parts[0].mul(&parts[2])?.add(&parts[1].sum(2, true)?)
        },
        &[x.clone()],
    );
    let y = randn(18, &[2, 2, 4]);
    check(
        "cat",
        |t| Tensor::cat(&[t[0].clone(), t[1].clone()], 1),
        &[x.clone(), y],
    );
    check(
        "index_select axis 0",
        |t| t[0].index_select(0, &[1, 0, 1]),
        &[x.clone()],
    );
    check(
        "index_select axis 1",
        |t| t[0].index_select(1, &[2, 2, 0]),
        &[x.clone()],
    );
    check(
        "unsqueeze squeeze",
        |t| {
            t[0].unsqueeze(1)?
                .mul(&t[0].unsqueeze(0)?.squeeze(0)?.unsqueeze(1)?)
        },
        &[x.clone()],
    );
    check(
        "broadcast_to",
        |t| t[0].narrow(1, 0, 1)?.broadcast_to(&[2, 3, 4]),
        &[x.clone()],
    );
    check("contiguous", |t| Ok(t[0].t()?.contiguous()), &[x]);
}

#[test]
fn conv2d_cases() {
    let x = randn(19, &[2, 3, 5, 4]);
    let w = randn(20, &[4, 3, 3, 2]);
    let b = randn(21, &[4]);
    check(
        "conv2d stride 1 pad 1",
        |t| t[0].conv2d(&t[1], Some(&t[2]), (1, 1), (1, 1)),
        &[x.clone(), w.clone(), b.clone()],
    );
    check(
        "conv2d stride 2 no pad",
        |t| t[0].conv2d(&t[1], Some(&t[2]), (2, 2), (0, 0)),
        &[x.clone(), w.clone(), b],
    );
    check(
        "conv2d no bias",
        |t| t[0].conv2d(&t[1], None, (2, 1), (1, 0)),
        &[x, w],
    );
}

#[test]
fn drop_path_with_fixed_seed() {
    let x = randn(22, &[4, 3, 2]);
    check(
        "drop_path",
        |t| t[0].drop_path(0.5, true, &mut Rng::new(7)),
        &[x],
    );
}

#[test]
fn two_layer_mlp_with_layernorm() {
    let x = randn(23, &[2, 3, 4]);
    let (g, b) = (randn(24, &[4]), randn(25, &[4]));
    let (w1, b1) = (randn(26, &[6, 4]), randn(27, &[6]));
    let (w2, b2) = (randn(28, &[3, 6]), randn(29, &[3]));
    check(
        "mlp",
        |t| {
            t[0].layer_norm(&t[1], &t[2], 1e-5)?
                .linear(&t[3], Some(&t[4]))?
                .gelu()?
                .linear(&t[5], Some(&t[6]))?
                .log_softmax()
        },
        &[x, g, b, w1, b1, w2, b2],
    );
}

#[test]
fn conv_layernorm_linear() {
    let x = randn(30, &[2, 2, 4, 4]);
    let (w, cb) = (randn(31, &[3, 2, 2, 2]), randn(32, &[3]));
    let (g, b) = (randn(33, &[3]), randn(34, &[3]));
    let (lw, lb) = (randn(35, &[2, 3]), randn(36, &[2]));
    check(
        "patch embed",
        |t| {
            let y = t[0].conv2d(&t[1], Some(&t[2]), (2, 2), (0, 0))?; // [2, 3, 2, 2]
            let tokens = y.reshape(&[2, 3, 4])?.transpose(1, 2)?; // [2, 4, 3]
            tokens
                .layer_norm(&t[3], &t[4], 1e-5)?
                .linear(&t[5], Some(&t[6]))?
                .mean_tokens()
        },
        &[x, w, cb, g, b, lw, lb],
    );
}
