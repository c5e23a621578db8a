//! Forward checks of views, the autodiff controls (no_grad, detach, parameters), the RNG, error
//! messages, and f32 (fast kernels) against f64 (references) on a composite graph.

use dinonat_engine::gradcheck::gradcheck;
use dinonat_engine::{no_grad, DType, EngineError, Rng, Tensor};

fn arange(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| i as f32).collect::<Vec<f32>>(), shape).unwrap()
}

#[test]
fn views_share_storage_and_read_correctly() {
    let x = arange(&[2, 3, 4]);
    let r = x.reshape(&[6, 4]).unwrap();
    assert!(r.shares_storage(&x));
    let p = x.permute(&[2, 0, 1]).unwrap();
    assert!(p.shares_storage(&x) && !p.is_contiguous());
    assert_eq!(p.shape(), &[4, 2, 3]);
    // p[i, j, k] = x[j, k, i] = 12 j + 4 k + i
    let pv = p.to_vec::<f32>().unwrap();
    assert_eq!(pv[6 + 3 + 2], (12 + 8 + 1) as f32); // p[1, 1, 2]
    let n = x.narrow(2, 1, 2).unwrap();
    assert!(n.shares_storage(&x));
    assert_eq!(n.to_vec::<f32>().unwrap()[..4], [1.0, 2.0, 5.0, 6.0]);
    // a fused QKV projection split into three views, no copy
    let qkv = arange(&[2, 9]);
    let parts = qkv.split(1, &[3, 3, 3]).unwrap();
    assert!(parts.iter().all(|t| t.shares_storage(&qkv)));
    assert_eq!(
        parts[2].to_vec::<f32>().unwrap(),
        vec![6.0, 7.0, 8.0, 15.0, 16.0, 17.0]
    );
    // reshape of a non-contiguous view copies, and is right
    let c = p.reshape(&[8, 3]).unwrap();
    assert!(!c.shares_storage(&x));
    assert_eq!(c.to_vec::<f32>().unwrap(), pv);
    // broadcast is a stride-0 view
    let b = x.narrow(0, 0, 1).unwrap().broadcast_to(&[3, 3, 4]).unwrap();
    assert!(b.shares_storage(&x));
    assert_eq!(b.strides()[0], 0);
}

#[test]
fn matmul_of_transposed_view_matches_copy() {
    let a = Rng::new(1).normal(&[5, 7], 0.0, 1.0, DType::F32);
    let b = Rng::new(2).normal(&[3, 7], 0.0, 1.0, DType::F32);
    let bt = b.t().unwrap();
    assert!(bt.shares_storage(&b));
    let via_view = a.matmul(&bt).unwrap().to_vec::<f32>().unwrap();
    let via_copy = a.matmul(&bt.contiguous()).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(via_view.len(), 15);
    for (x, y) in via_view.iter().zip(&via_copy) {
        assert!((x - y).abs() < 1e-5);
    }
}

#[test]
fn elementwise_forward_values() {
    let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let b = Tensor::from_vec(vec![10.0f64, 20.0, 30.0], &[3]).unwrap();
    assert_eq!(
        a.add(&b).unwrap().to_vec::<f64>().unwrap(),
        vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    let col = Tensor::from_vec(vec![2.0f64, 4.0], &[2, 1]).unwrap();
    assert_eq!(
        a.div(&col).unwrap().to_vec::<f64>().unwrap(),
        vec![0.5, 1.0, 1.5, 1.0, 1.25, 1.5]
    );
    assert_eq!(
        a.sum(1, false).unwrap().to_vec::<f64>().unwrap(),
        vec![6.0, 15.0]
    );
    assert_eq!(a.max(0, true).unwrap().shape(), &[1, 3]);
    assert_eq!(a.sum_all().unwrap().item().unwrap(), 21.0);
}

#[test]
fn gradients_accumulate_and_no_grad_records_nothing() {
    let x = Tensor::parameter(
        "x",
        &Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).unwrap(),
    );
    // L = sum(x * x) + sum(3 x)  ->  dL/dx = 2x + 3
    let loss = x
        .mul(&x)
        .unwrap()
        .add(&x.mul_scalar(3.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(
        grads.get(&x).unwrap().to_vec::<f64>().unwrap(),
        vec![5.0, 7.0, 9.0]
    );

    let y = {
        let _guard = no_grad();
        assert!(!dinonat_engine::is_grad_enabled());
        x.mul(&x).unwrap()
    };
    assert!(dinonat_engine::is_grad_enabled());
    assert!(!y.requires_grad() && y.op().is_none());
}

#[test]
fn detach_stops_the_gradient() {
    let x = Tensor::from_vec(vec![1.5f64, -2.0], &[2])
        .unwrap()
        .with_grad();
    // L = sum(x * detach(x)): dL/dx = detach(x), not 2x
    let loss = x.mul(&x.detach()).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![1.5, -2.0]);
    // and the gradient checker notices such a mismatch when it is not intended
    assert!(gradcheck(|t| t[0].mul(&t[0].detach()), &[x.detach()]).is_err());
}

#[test]
fn parameters_are_named_leaves() {
    let w = Tensor::parameter(
        "blocks.0.mlp.fc1.weight",
        &Tensor::zeros(&[2, 3], DType::F32),
    );
    assert_eq!(w.name(), Some("blocks.0.mlp.fc1.weight"));
    assert!(w.requires_grad() && w.op().is_none());
    let plain = Tensor::ones(&[2], DType::F32);
    assert!(!plain.requires_grad() && plain.name().is_none());
    // in-place update (an optimizer step) is seen through the parameter
    w.update_in_place(|d: &mut [f32]| d.iter_mut().for_each(|v| *v += 1.0))
        .unwrap();
    assert_eq!(w.to_vec::<f32>().unwrap(), vec![1.0; 6]);
    // a graph from a parameter: only the parameter gets a gradient
    let loss = w
        .mul(&Tensor::full(&[2, 3], 2.0, DType::F32))
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(grads.len(), 1);
    assert_eq!(
        grads.get(&w).unwrap().to_vec::<f32>().unwrap(),
        vec![2.0; 6]
    );
}

#[test]
fn rng_is_deterministic_across_thread_counts() {
    let draw = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let mut rng = Rng::new(42);
                let a = rng
                    .normal(&[10_001], 0.0, 1.0, DType::F64)
                    .to_vec::<f64>()
                    .unwrap();
                let b = rng
                    .uniform(&[777], -1.0, 1.0, DType::F32)
                    .to_vec::<f32>()
                    .unwrap();
                (a, b)
            })
    };
    assert_eq!(draw(1), draw(2));
    let mut rng = Rng::new(42);
    let first = rng.uniform_vec(4);
    assert_ne!(
        first,
        rng.uniform_vec(4),
        "consecutive draws use different streams"
    );
    assert_ne!(Rng::new(1).uniform_vec(4), Rng::new(2).uniform_vec(4));
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn rng_distributions() {
    let n = 100_000;
    let mut rng = Rng::new(7);
    // uniform [0, 1): mean 1/2, std 1/sqrt(12)
    let (m, s) = mean_std(&rng.uniform_vec(n));
    assert!(
        (m - 0.5).abs() < 0.01 && (s - 0.288_675).abs() < 0.01,
        "uniform {m} {s}"
    );
    let (m, s) = mean_std(
        &rng.normal(&[n], 1.0, 2.0, DType::F64)
            .to_vec::<f64>()
            .unwrap(),
    );
    assert!(
        (m - 1.0).abs() < 0.03 && (s - 2.0).abs() < 0.03,
        "normal {m} {s}"
    );
    // timm's ViT init: std 0.02 truncated to [-2, 2] (practically untruncated)
    let v = rng
        .trunc_normal(&[n], 0.0, 0.02, -2.0, 2.0, DType::F64)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    let (m, s) = mean_std(&v);
    assert!(
        m.abs() < 0.001 && (s - 0.02).abs() < 0.001,
        "trunc_normal {m} {s}"
    );
    // standard normal truncated to [-1, 1]: std = sqrt(1 - 2 phi(1) / (2 Phi(1) - 1)) = 0.5396
    let v = rng
        .trunc_normal(&[n], 0.0, 1.0, -1.0, 1.0, DType::F64)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    let (m, s) = mean_std(&v);
    assert!(
        m.abs() < 0.01 && (s - 0.5396).abs() < 0.01,
        "trunc_normal [-1, 1] {m} {s}"
    );
    assert!((dinonat_engine::rng::erfinv(0.5) - 0.476_936_276_204_47).abs() < 1e-12);
}

#[test]
fn bad_shapes_are_errors_with_messages() {
    let a = Tensor::zeros(&[2, 3], DType::F32);
    let b = Tensor::zeros(&[4], DType::F32);
    let e = a.add(&b).unwrap_err();
    assert_eq!(e.to_string(), "add: shape mismatch between [2, 3] and [4]");
    let e = a.matmul(&Tensor::zeros(&[4, 5], DType::F32)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "matmul: shape mismatch between [2, 3] and [4, 5]"
    );
    let e = a
        .linear(&Tensor::zeros(&[5, 4], DType::F32), None)
        .unwrap_err();
    assert!(e
        .to_string()
        .starts_with("linear: shape mismatch between [2, 3] and [5, 4]"));
    let e = a.add(&Tensor::zeros(&[2, 3], DType::F64)).unwrap_err();
    assert!(matches!(e, EngineError::DTypeMismatch { .. }));
    assert_eq!(e.to_string(), "add: dtype mismatch between F32 and F64");
    assert!(a
        .sum(2, false)
        .unwrap_err()
        .to_string()
        .contains("axis 2 out of range"));
    assert!(a.narrow(1, 2, 2).is_err());
    assert!(a.reshape(&[4, 2]).is_err());
    assert!(a.permute(&[0, 0]).is_err());
    assert!(a.index_select(0, &[2]).is_err());
    assert!(a.sum_all().unwrap().backward().is_ok());
    assert!(a.backward().unwrap_err().to_string().contains("scalar"));
    assert!(Tensor::cat(&[a.clone(), b], 0).is_err());
    assert!(Tensor::from_vec(vec![1.0f32; 5], &[2, 3]).is_err());
    let img = Tensor::zeros(&[1, 3, 4, 4], DType::F32);
    assert!(img
        .conv2d(
            &Tensor::zeros(&[2, 3, 5, 5], DType::F32),
            None,
            (1, 1),
            (0, 0)
        )
        .is_err());
    assert!(img.drop_path(1.0, true, &mut Rng::new(0)).is_err());
}

/// The same MLP-with-layernorm graph in f32 (fast kernels) and f64 (references): outputs and
/// gradients agree to f32 precision (relative 1e-4).
#[test]
fn f32_and_f64_agree_on_a_composite_graph() {
    let run = |dtype: DType| {
        let mut rng = Rng::new(99);
        let x = rng.normal(&[4, 9, 16], 0.0, 1.0, dtype);
        let g = Tensor::parameter("norm.weight", &rng.normal(&[16], 1.0, 0.1, dtype));
        let b = Tensor::parameter("norm.bias", &rng.normal(&[16], 0.0, 0.1, dtype));
        let w1 = Tensor::parameter(
            "fc1.weight",
            &rng.trunc_normal(&[32, 16], 0.0, 0.2, -0.4, 0.4, dtype)
                .unwrap(),
        );
        let w2 = Tensor::parameter("fc2.weight", &rng.normal(&[8, 32], 0.0, 0.2, dtype));
        let conv_w = Tensor::parameter("conv.weight", &rng.normal(&[4, 4, 3, 3], 0.0, 0.2, dtype));
        let h = x
            .layer_norm(&g, &b, 1e-6)
            .unwrap()
            .linear(&w1, None)
            .unwrap()
            .gelu()
            .unwrap();
        let logits = h.linear(&w2, None).unwrap(); // [4, 9, 8]
        let img = logits.reshape(&[4, 4, 6, 3]).unwrap();
        let y = img
            .conv2d(&conv_w, None, (1, 1), (1, 1))
            .unwrap()
            .reshape(&[4, 72])
            .unwrap();
        let loss = y
            .log_softmax()
            .unwrap()
            .mean_all()
            .unwrap()
            .add(
                &logits
                    .softmax()
                    .unwrap()
                    .max(2, false)
                    .unwrap()
                    .mean_all()
                    .unwrap(),
            )
            .unwrap();
        let grads = loss.backward().unwrap();
        let mut out = vec![loss.item().unwrap()];
        for p in [&g, &b, &w1, &w2, &conv_w] {
            out.extend(grads.get(p).unwrap().to_vec_f64());
        }
        out
    };
    let (a, b) = (run(DType::F32), run(DType::F64));
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * scale,
            "element {i}: f32 {x} vs f64 {y}"
        );
    }
}

#[test]
fn large_inputs_take_the_parallel_paths() {
    // 2 x 128 x 160 = 40960 elements, above the parallel threshold of the elementwise loops
    let mut rng = Rng::new(3);
    let a = rng.normal(&[2, 128, 160], 0.0, 1.0, DType::F32);
    let bias = rng.normal(&[160], 0.0, 1.0, DType::F32);
    let (av, bv) = (a.to_vec::<f32>().unwrap(), bias.to_vec::<f32>().unwrap());
    let sum = a.add(&bias).unwrap().to_vec::<f32>().unwrap();
    assert!(sum
        .iter()
        .enumerate()
        .all(|(i, &v)| v == av[i] + bv[i % 160]));
    let prod = a.mul(&a).unwrap().to_vec::<f32>().unwrap();
    assert!(prod.iter().zip(&av).all(|(&p, &x)| p == x * x));
    let rows = a.sum(2, false).unwrap().to_vec::<f32>().unwrap();
    let expected: f32 = av[..160].iter().sum();
    assert!((rows[0] - expected).abs() < 1e-4);
}

#[test]
fn a_long_graph_drops_without_deep_recursion() {
    let x = Tensor::from_vec(vec![1.0f32], &[1]).unwrap().with_grad();
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.mul_scalar(1.0).unwrap();
    }
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec::<f32>().unwrap(), vec![1.0]);
    drop(y);
}

#[test]
fn pooled_buffers_are_reused() {
    let x = Tensor::ones(&[64, 64], DType::F32);
    drop(x.mul_scalar(2.0).unwrap());
    let (hits_before, _) = dinonat_engine::pool::stats();
    let y = x.mul_scalar(3.0).unwrap();
    let (hits_after, _) = dinonat_engine::pool::stats();
    assert!(hits_after > hits_before);
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![3.0; 4096]);
}

#[test]
fn to_dtype_passes_gradients_back() {
    let x = Tensor::from_vec(vec![0.5f64, -1.5, 2.0], &[3])
        .unwrap()
        .with_grad();
    let y = x.to_dtype(DType::F32).mul_scalar(2.0).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    let g = y.sum_all().unwrap().backward().unwrap();
    let gx = g.get(&x).unwrap();
    assert_eq!(gx.dtype(), DType::F64);
    assert_eq!(gx.to_vec::<f64>().unwrap(), vec![2.0; 3]);
}

#[test]
fn tensors_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tensor>();
    assert_send_sync::<dinonat_engine::Gradients>();
}
