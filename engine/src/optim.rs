//! Optimisers and gradient clipping (math: docs/optim.md).
//!
//! - [`AdamW`]: Adam with decoupled weight decay (Loshchilov & Hutter, ICLR 2019), PyTorch's
//!   update order: decay the weight, update the moments, step with bias-corrected moments.
//! - [`clip_grad_norms`]: DINO's clipping, each tensor by its OWN norm (not the global norm).
//!
//! Parameters come in groups ([`ParamGroup`]) whose lr and weight decay are scaled separately:
//! [`ParamGroup::from_store`] puts 1-D tensors and `rpb` (the store's `no_decay` flag) in a group
//! without decay, as DINO and NAT do. AdamW's moments and arithmetic are in the parameter's dtype
//! (f32 for the networks, as the CUDA kernel `adamw_step_f32`; f64 in the tests), saved in that
//! dtype, so a resumed run continues bit for bit; F64 moments of older checkpoints load rounded
//! once to f32.
//!
//! A parameter with no gradient in a step (DINO's frozen last layer drops it) is skipped entirely:
//! no decay, no moment update, as PyTorch does for `p.grad is None`.

use crate::kernels::Float;
use crate::nn::ParamStore;
use crate::{with_dtype, DType, Element, EngineError, Gradients, Result, Tensor};
use std::collections::HashMap;

mod device;

/// Parameters sharing an lr scale and a weight-decay scale.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    pub name: String,
    /// (checkpoint name, leaf tensor), in a fixed order.
    pub params: Vec<(String, Tensor)>,
    /// Multiplies the lr given to `step`.
    pub lr_scale: f64,
    /// Multiplies the weight decay given to `step` (0 for biases, norms, rpb).
    pub weight_decay_scale: f64,
}

impl ParamGroup {
    /// The trained entries of `store` in two groups, `decay` and `no_decay`, names prefixed with
    /// `prefix.` (e.g. `backbone`, `head`) so that several stores can share one optimiser.
    pub fn from_store(store: &ParamStore, prefix: &str) -> Vec<ParamGroup> {
        let mut decay = Vec::new();
        let mut no_decay = Vec::new();
        for (name, p) in store.iter().filter(|(_, p)| p.requires_grad) {
            let entry = (crate::nn::join(prefix, name), p.tensor.clone());
            if p.no_decay {
                no_decay.push(entry);
            } else {
                decay.push(entry);
            }
        }
        vec![
            ParamGroup {
                name: crate::nn::join(prefix, "decay"),
                params: decay,
                lr_scale: 1.0,
                weight_decay_scale: 1.0,
            },
            ParamGroup {
                name: crate::nn::join(prefix, "no_decay"),
                params: no_decay,
                lr_scale: 1.0,
                weight_decay_scale: 0.0,
            },
        ]
    }
}

/// Reads the values of a parameter or gradient as f64 (a CUDA driver failure is an error).
/// sum_i t_i^2 in f64, in element order, read in place: the sum `t.try_to_vec_f64()` and a sum
/// of the squares gave, bit for bit, without the f64 copy of every gradient (it was most of the
/// optimiser's time outside the kernels).
fn sum_of_squares(t: &Tensor) -> f64 {
    with_dtype!(t.dtype(), T => t.with_contiguous(|s: &[T]| {
        s.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>()
    }))
}

/// An update below half a BF16 ulp would vanish: the master weights stay f32.
fn bf16_parameter(p: &Tensor) -> EngineError {
    EngineError::arg(
        "optimiser step",
        p.shape(),
        "the parameter is BF16: optimisers update f32 (or f64) master weights; keep it f32 \
         and run the forward on p.to_dtype(DType::BF16) (the gradient comes back in f32)",
    )
}

/// The first and second moments of one parameter, in its dtype.
#[derive(Clone, Debug)]
enum Moments {
    F32(Vec<f32>, Vec<f32>),
    F64(Vec<f64>, Vec<f64>),
}

/// One step's scalars in the parameter's type T: 1 - η λ, β1, 1 - β1, β2, 1 - β2 and ε computed
/// in T from η, λ, β, ε rounded to T (as the CUDA kernel does), the bias corrections 1 - β^t in
/// f64 then rounded.
struct AdamWScalars<T> {
    lr: T,
    decay: T,
    b1: T,
    c1: T,
    b2: T,
    c2: T,
    eps: T,
    bc1: T,
    bc2: T,
}

impl<T: Float> AdamWScalars<T> {
    fn new(lr: f64, wd: f64, (b1, b2, eps): (f64, f64, f64), t: u64) -> AdamWScalars<T> {
        let (lr_t, b1_t, b2_t) = (T::from_f64(lr), T::from_f64(b1), T::from_f64(b2));
        AdamWScalars {
            lr: lr_t,
            decay: T::ONE - lr_t * T::from_f64(wd),
            b1: b1_t,
            c1: T::ONE - b1_t,
            b2: b2_t,
            c2: T::ONE - b2_t,
            eps: T::from_f64(eps),
            bc1: T::from_f64(1.0 - b1.powi(t as i32)),
            bc2: T::from_f64(1.0 - b2.powi(t as i32)),
        }
    }
}

/// p <- p (1 - η λ); m <- β1 m + (1 - β1) g; v <- β2 v + (1 - β2) g²;
/// p <- p - η (m / bc1) / (sqrt(v / bc2) + ε), elementwise in T.
fn adamw_update<T: Element>(
    p: &Tensor,
    g: &Tensor,
    m: &mut [T],
    v: &mut [T],
    s: &AdamWScalars<T>,
) -> Result<()> {
    g.with_contiguous(|g: &[T]| {
        p.update_in_place(|p: &mut [T]| {
            for (((x, &gi), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let decayed = *x * s.decay;
                *mi = s.b1 * *mi + s.c1 * gi;
                *vi = s.b2 * *vi + s.c2 * gi * gi;
                *x = decayed - s.lr * (*mi / s.bc1) / ((*vi / s.bc2).sqrt() + s.eps);
            }
        })
    })
}

/// AdamW: for a parameter p with gradient g at step t (1-based), lr η, weight decay λ:
///   p <- p (1 - η λ);  m <- β1 m + (1 - β1) g;  v <- β2 v + (1 - β2) g²;
///   p <- p - η (m / (1 - β1^t)) / (sqrt(v / (1 - β2^t)) + ε).
#[derive(Clone, Debug)]
pub struct AdamW {
    pub groups: Vec<ParamGroup>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken per parameter (a skipped parameter does not advance its own count).
    steps: HashMap<String, u64>,
    moments: HashMap<String, Moments>,
    /// m and v of the parameters on the GPU, as f32 device tensors (optim/device.rs).
    device_moments: device::DeviceMoments,
}

impl AdamW {
    /// β 0.9 / 0.999, ε 1e-8 (the PyTorch and DINO defaults).
    pub fn new(groups: Vec<ParamGroup>) -> AdamW {
        AdamW {
            groups,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            steps: HashMap::new(),
            moments: HashMap::new(),
            device_moments: Default::default(),
        }
    }

    /// One update of every parameter that has a gradient in `grads`, with lr and weight decay
    /// scaled per group.
    pub fn step(&mut self, grads: &Gradients, lr: f64, weight_decay: f64) -> Result<()> {
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        for group in &self.groups {
            let lr = lr * group.lr_scale;
            let wd = weight_decay * group.weight_decay_scale;
            for (name, p) in &group.params {
                let Some(g) = grads.get(p) else { continue };
                check_grad("AdamW::step", name, p, g)?;
                if p.is_cuda() {
                    let t = self.steps.entry(name.clone()).or_insert(0);
                    *t += 1;
                    let h = device::adamw_step(lr, wd, (b1, b2), eps, *t);
                    self.device_moments.step(name, p, g, &h)?;
                    continue;
                }
                p.check_dtype("AdamW::step", g)?;
                let n = p.numel();
                let moments = match self.moments.get_mut(name) {
                    Some(moments) => moments,
                    None => {
                        let fresh = match p.dtype() {
                            DType::F32 => Moments::F32(vec![0.0; n], vec![0.0; n]),
                            DType::F64 => Moments::F64(vec![0.0; n], vec![0.0; n]),
                            _ => return Err(bf16_parameter(p)),
                        };
                        self.moments.entry(name.clone()).or_insert(fresh)
                    }
                };
                let t = self.steps.entry(name.clone()).or_insert(0);
                *t += 1;
                let hyper = (b1, b2, eps);
                match moments {
                    Moments::F32(m, v) => {
                        adamw_update(p, g, m, v, &AdamWScalars::new(lr, wd, hyper, *t))?
                    }
                    Moments::F64(m, v) => {
                        adamw_update(p, g, m, v, &AdamWScalars::new(lr, wd, hyper, *t))?
                    }
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors: `adamw.m.<name>`, `adamw.v.<name>` (the parameter's dtype) and
    /// `adamw.step.<name>` (one f64).
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for group in &self.groups {
            for (name, p) in &group.params {
                if let (Some([m, v]), Some(t)) =
                    (self.device_moments.state(name)?, self.steps.get(name))
                {
                    out.push((format!("adamw.m.{name}"), m));
                    out.push((format!("adamw.v.{name}"), v));
                    out.push((
                        format!("adamw.step.{name}"),
                        Tensor::from_vec(vec![*t as f64], &[1])?,
                    ));
                    continue;
                }
                let (Some(moments), Some(t)) = (self.moments.get(name), self.steps.get(name))
                else {
                    continue;
                };
                let (m, v) = match moments {
                    Moments::F32(m, v) => (
                        Tensor::from_slice(m, p.shape())?,
                        Tensor::from_slice(v, p.shape())?,
                    ),
                    Moments::F64(m, v) => (
                        Tensor::from_slice(m, p.shape())?,
                        Tensor::from_slice(v, p.shape())?,
                    ),
                };
                out.push((format!("adamw.m.{name}"), m));
                out.push((format!("adamw.v.{name}"), v));
                out.push((
                    format!("adamw.step.{name}"),
                    Tensor::from_vec(vec![*t as f64], &[1])?,
                ));
            }
        }
        Ok(out)
    }

    /// Restores the state written by [`AdamW::state_tensors`]; `get` looks a tensor up by name.
    /// Parameters absent from the state start fresh; a mis-shaped entry is an error naming it.
    /// Moments of another dtype are converted to the parameter's (the F64 moments of checkpoints
    /// written before the moments became f32 are rounded once, to nearest).
    pub fn load_state(&mut self, get: impl Fn(&str) -> Option<Tensor>) -> Result<()> {
        for group in &self.groups {
            for (name, p) in &group.params {
                let Some(t) = get(&format!("adamw.step.{name}")) else {
                    continue;
                };
                let fetch = |kind: &str| -> Result<Tensor> {
                    let key = format!("adamw.{kind}.{name}");
                    let x = get(&key).ok_or_else(|| {
                        EngineError::arg("AdamW::load_state", p.shape(), format!("'{key}' missing"))
                    })?;
                    if x.shape() != p.shape() {
                        return Err(EngineError::arg(
                            "AdamW::load_state",
                            p.shape(),
                            format!("'{key}' has shape {:?}", x.shape()),
                        ));
                    }
                    x.try_to_dtype(p.dtype())
                };
                let (m, v) = (fetch("m")?, fetch("v")?);
                if p.is_cuda() {
                    self.device_moments.load(name, p, &m, &v)?;
                    self.steps.insert(name.clone(), t.item()? as u64);
                    continue;
                }
                let moments = match p.dtype() {
                    DType::F32 => Moments::F32(m.to_vec()?, v.to_vec()?),
                    DType::F64 => Moments::F64(m.to_vec()?, v.to_vec()?),
                    _ => return Err(bf16_parameter(p)),
                };
                self.moments.insert(name.clone(), moments);
                self.steps.insert(name.clone(), t.item()? as u64);
            }
        }
        Ok(())
    }
}

fn check_grad(op: &'static str, name: &str, p: &Tensor, g: &Tensor) -> Result<()> {
    if g.shape() != p.shape() {
        return Err(EngineError::arg(
            op,
            p.shape(),
            format!("gradient of '{name}' has shape {:?}", g.shape()),
        ));
    }
    Ok(())
}

/// Clips each parameter's gradient to norm at most `max_norm` by its own norm:
/// g <- g * max_norm / (||g|| + 1e-6) when that factor is below 1 (DINO's `clip_gradients`).
/// Returns the norm of each gradient before clipping, in `params` order (None: no gradient), as
/// a 0-d tensor on the gradient's device: on the GPU the norms are reduced and the scale applied
/// there, and nothing is read back unless the caller reads a norm (`item`).
pub fn clip_grad_norms(
    grads: &mut Gradients,
    params: &[(String, Tensor)],
    max_norm: f64,
) -> Result<Vec<Option<Tensor>>> {
    let mut norms = Vec::with_capacity(params.len());
    for (_, p) in params {
        let Some(g) = grads.get(p) else {
            norms.push(None);
            continue;
        };
        if g.is_cuda() {
            let (clipped, norm) = g.cuda_clip_grad_norm(max_norm)?;
            grads.insert(p, clipped);
            norms.push(Some(norm));
            continue;
        }
        let norm = sum_of_squares(g).sqrt();
        norms.push(Some(Tensor::scalar(norm, DType::F64)));
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            let clipped = {
                let _guard = crate::no_grad();
                g.mul_scalar(coef)?
            };
            grads.insert(p, clipped);
        }
    }
    Ok(norms)
}

/// Every (name, tensor) of the groups, in order.
pub fn all_params(groups: &[ParamGroup]) -> Vec<(String, Tensor)> {
    groups
        .iter()
        .flat_map(|g| g.params.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Init;

    fn grads_of(pairs: &[(&Tensor, Vec<f64>)]) -> Gradients {
        let mut g = Gradients::default();
        for (p, v) in pairs {
            g.insert(
                p,
                Tensor::from_slice(v, p.shape())
                    .unwrap()
                    .to_dtype(p.dtype()),
            );
        }
        g
    }

    #[test]
    fn adamw_matches_a_hand_computed_reference_and_skips_decay_on_1d() {
        let mut store = ParamStore::new(DType::F64, 1);
        let w = store.add("w", &[1, 2], Init::Constant(1.0)).unwrap();
        let b = store.add("b", &[2], Init::Constant(1.0)).unwrap();
        let mut opt = AdamW::new(ParamGroup::from_store(&store, ""));
        let (lr, wd) = (0.1, 0.5);
        let (g1, g2) = ([0.5, -2.0], [0.25, 1.0]);
        // reference: two steps of the formula for each element
        let reference = |decay: bool, x0: f64, ga: f64, gb: f64| {
            let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
            let (mut x, mut m, mut v) = (x0, 0.0, 0.0);
            for (t, g) in [(1, ga), (2, gb)] {
                if decay {
                    x *= 1.0 - lr * wd;
                }
                m = b1 * m + (1.0 - b1) * g;
                v = b2 * v + (1.0 - b2) * g * g;
                let mh = m / (1.0 - b1.powi(t));
                let vh = v / (1.0 - b2.powi(t));
                x -= lr * mh / (vh.sqrt() + eps);
            }
            x
        };
        opt.step(&grads_of(&[(&w, g1.to_vec()), (&b, g1.to_vec())]), lr, wd)
            .unwrap();
        opt.step(&grads_of(&[(&w, g2.to_vec()), (&b, g2.to_vec())]), lr, wd)
            .unwrap();
        let wv = w.to_vec::<f64>().unwrap();
        let bv = b.to_vec::<f64>().unwrap();
        for i in 0..2 {
            assert!((wv[i] - reference(true, 1.0, g1[i], g2[i])).abs() < 1e-15);
            assert!((bv[i] - reference(false, 1.0, g1[i], g2[i])).abs() < 1e-15);
        }
        assert!(wv[0] != bv[0]); // the decay made a difference
    }

    #[test]
    fn adamw_skips_parameters_without_gradient_and_state_round_trips() {
        let mut store = ParamStore::new(DType::F32, 1);
        let w = store
            .add("w", &[3, 2], Init::TruncNormal { std: 1.0 })
            .unwrap();
        let v = store
            .add("v", &[2, 2], Init::TruncNormal { std: 1.0 })
            .unwrap();
        let groups = ParamGroup::from_store(&store, "net");
        let mut opt = AdamW::new(groups.clone());
        let v0 = v.to_vec::<f32>().unwrap();
        let g = |s: f64| grads_of(&[(&w, vec![s, -1.0, 2.0, 0.5, 0.1, -0.3])]);
        opt.step(&g(1.0), 0.01, 0.1).unwrap();
        assert_eq!(v.to_vec::<f32>().unwrap(), v0); // no gradient: untouched, even by decay
                                                    // save, continue on a copy, compare bitwise with the original continuing
        let state = opt.state_tensors().unwrap();
        assert_eq!(state.len(), 3); // only w has state
        let w_copy = Tensor::parameter("w", &w.detach().to_dtype(DType::F32));
        w_copy.assign(&w).unwrap();
        let mut groups2 = groups.clone();
        groups2[0].params = vec![
            ("net.w".into(), w_copy.clone()),
            groups[0].params[1].clone(),
        ];
        let mut opt2 = AdamW::new(groups2);
        opt2.load_state(|n| state.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone()))
            .unwrap();
        opt.step(&g(0.7), 0.01, 0.1).unwrap();
        opt2.step(
            &grads_of(&[(&w_copy, vec![0.7, -1.0, 2.0, 0.5, 0.1, -0.3])]),
            0.01,
            0.1,
        )
        .unwrap();
        assert_eq!(w.to_vec::<f32>().unwrap(), w_copy.to_vec::<f32>().unwrap());
        // a mis-shaped state entry is an error naming it
        let bad = Tensor::zeros(&[2], DType::F64);
        let e = opt2
            .load_state(|n| {
                Some(if n.starts_with("adamw.m") {
                    bad.clone()
                } else {
                    Tensor::zeros(&[1], DType::F64)
                })
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("adamw.m.net.w"), "{e}");
    }

    #[test]
    fn adamw_f32_state_tracks_f64_and_loads_older_f64_moments() {
        // the same 20 steps in f32 and in f64 from the same start: f32 moments and arithmetic
        // stay within 1e-5 (relative) of f64
        let start = crate::Rng::new(5).normal(&[4, 33], 0.0, 1.0, DType::F64);
        let p64 = Tensor::parameter("p", &start);
        let p32 = Tensor::parameter("p", &start.to_dtype(DType::F32));
        let group = |p: &Tensor| {
            vec![ParamGroup {
                name: "g".into(),
                params: vec![("p".into(), p.clone())],
                lr_scale: 1.0,
                weight_decay_scale: 1.0,
            }]
        };
        let (mut o64, mut o32) = (AdamW::new(group(&p64)), AdamW::new(group(&p32)));
        let mut rng = crate::Rng::new(6);
        for _ in 0..20 {
            let g = rng.normal_vec(p64.numel());
            o64.step(&grads_of(&[(&p64, g.clone())]), 1e-2, 0.05)
                .unwrap();
            o32.step(&grads_of(&[(&p32, g)]), 1e-2, 0.05).unwrap();
        }
        let (a, b) = (p64.to_vec_f64(), p32.to_vec_f64());
        let err = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
            / a.iter().map(|x| x * x).sum::<f64>().sqrt();
        println!("20 AdamW steps, f32 vs f64: rel err {err:.2e}");
        assert!(err < 1e-5, "f32 vs f64 AdamW: rel err {err:.2e}");
        let state = o32.state_tensors().unwrap();
        assert!(state
            .iter()
            .all(|(n, t)| n.contains("step") || t.dtype() == DType::F32));

        // a checkpoint written before the change holds F64 moments: they load, rounded once
        let old: Vec<(String, Tensor)> = o64.state_tensors().unwrap();
        assert!(old.iter().all(|(_, t)| t.dtype() == DType::F64));
        let q = Tensor::parameter("p", &p64.detach().to_dtype(DType::F32));
        let mut resumed = AdamW::new(group(&q));
        resumed
            .load_state(|n| old.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone()))
            .unwrap();
        let loaded = resumed.state_tensors().unwrap();
        for ((name, was), (_, now)) in old.iter().zip(&loaded) {
            if name.starts_with("adamw.step.") {
                assert_eq!(now.to_vec_f64(), was.to_vec_f64());
                continue;
            }
            let want: Vec<f32> = was.to_vec_f64().iter().map(|&x| x as f32).collect();
            assert_eq!(now.to_vec::<f32>().unwrap(), want, "{name}");
        }
        let g = rng.normal_vec(q.numel());
        resumed.step(&grads_of(&[(&q, g)]), 1e-2, 0.05).unwrap();
        assert!(q.to_vec_f64().iter().all(|x| x.is_finite()));
        assert_eq!(resumed.steps.get("p"), Some(&21));
        // a gradient of another dtype is an error naming both
        let mut wrong = Gradients::default();
        wrong.insert(&q, Tensor::ones(q.shape(), DType::F64));
        let e = resumed.step(&wrong, 1e-2, 0.0).unwrap_err().to_string();
        assert!(e.contains("F64") && e.contains("F32"), "{e}");
    }

    #[test]
    fn clipping_uses_each_tensors_own_norm() {
        let a = Tensor::from_slice(&[3.0f64, 4.0], &[2])
            .unwrap()
            .with_grad(); // norm 5
        let b = Tensor::from_slice(&[0.3f64, 0.4], &[2])
            .unwrap()
            .with_grad(); // norm 0.5
        let c = Tensor::from_slice(&[1.0f64], &[1]).unwrap().with_grad(); // no gradient
        let mut g = grads_of(&[(&a, vec![3.0, 4.0]), (&b, vec![0.3, 0.4])]);
        let params = vec![
            ("a".into(), a.clone()),
            ("b".into(), b.clone()),
            ("c".into(), c),
        ];
        let norms: Vec<Option<f64>> = clip_grad_norms(&mut g, &params, 3.0)
            .unwrap()
            .iter()
            .map(|n| n.as_ref().map(|t| t.item().unwrap()))
            .collect();
        assert_eq!(norms, vec![Some(5.0), Some(0.5), None]);
        let ga = g.get(&a).unwrap().to_vec::<f64>().unwrap();
        let s = 3.0 / (5.0 + 1e-6);
        assert!((ga[0] - 3.0 * s).abs() < 1e-15 && (ga[1] - 4.0 * s).abs() < 1e-15);
        // below the threshold: unchanged (a global norm of 5.02 would have scaled b too)
        assert_eq!(g.get(&b).unwrap().to_vec::<f64>().unwrap(), vec![0.3, 0.4]);
    }
}
