//! Reverse-mode autodiff, the whole of it (read this file first; docs/autodiff.md walks through an
//! example).
//!
//! Every tensor made by an op while gradients are enabled keeps an [`Op`]: the op's inputs and a
//! backward function that maps the gradient of the output to gradients of the inputs. The tensors
//! and their ops form a DAG. [`Tensor::backward`] on a scalar loss
//! 1. sorts the part of the graph that needs gradients topologically (inputs before outputs),
//! 2. seeds d loss / d loss = 1 and walks the order backwards, calling each op's backward once all
//!    gradients of its output have been summed,
//! 3. accumulates (+) the gradients each input receives from every op that used it,
//! 4. returns the gradients of the leaves (parameters and `with_grad` tensors) keyed by tensor id.
//!
//! Backward functions run with gradients disabled, so they may use ordinary tensor ops.

use crate::{EngineError, Result, Tensor};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

/// Maps the gradient of an op's output to one gradient per input (`None`: input needs none).
pub type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// How a tensor was made: the op's name (for error messages), inputs and backward.
pub struct Op {
    pub name: &'static str,
    pub inputs: Vec<Tensor>,
    pub backward: BackwardFn,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record the graph.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Disables graph recording on this thread until the guard is dropped (scopes nest).
pub struct NoGradGuard {
    previous: bool,
}

/// `let _guard = no_grad();` — ops in this scope record nothing (evaluation, EMA updates).
pub fn no_grad() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { previous }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// `let _guard = enable_grad();` — ops in this scope record the graph again, inside a
/// [`no_grad`] scope or a backward (activation checkpointing's recomputation, recompute.rs).
pub fn enable_grad() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(true));
    NoGradGuard { previous }
}

/// Gradients of the leaves of a graph, keyed by tensor id.
#[derive(Default, Debug)]
pub struct Gradients {
    map: HashMap<usize, Tensor>,
}

impl Gradients {
    /// d loss / d `t` (same shape as `t`), if `t` is a leaf that requires grad and the loss uses it.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.map.get(&t.id())
    }
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.map.remove(&t.id())
    }
    pub fn insert(&mut self, t: &Tensor, grad: Tensor) {
        self.map.insert(t.id(), grad);
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Tensors that need a gradient, each after all of its inputs (iterative depth-first post-order,
/// so deep graphs do not overflow the stack).
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = t.op() {
            for input in op.inputs.iter().filter(|i| i.requires_grad()) {
                if !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// Called with each leaf and its gradient as soon as that gradient is final ([`Tensor::backward_with`]).
pub type GradientHook<'a> = dyn FnMut(&Tensor, &Tensor) -> Result<()> + 'a;

/// How many ops of the walk still have to add into each leaf's gradient (docs/autodiff.md,
/// "Final gradients"): every edge from a node of `order` to a leaf input counts once.
fn leaf_consumers(order: &[Tensor]) -> HashMap<usize, usize> {
    let mut count = HashMap::new();
    for t in order {
        if let Some(op) = t.op() {
            for input in op
                .inputs
                .iter()
                .filter(|i| i.requires_grad() && i.op().is_none())
            {
                *count.entry(input.id()).or_insert(0) += 1;
            }
        }
    }
    count
}

impl Tensor {
    /// Back-propagates from this scalar (one element) and returns the leaves' gradients.
    pub fn backward(&self) -> Result<Gradients> {
        self.backward_walk(None)
    }

    /// [`Tensor::backward`] that calls `hook(leaf, gradient)` once per leaf the loss uses, as soon
    /// as the leaf's gradient is final: right after the last op that uses the leaf has added its
    /// contribution (docs/autodiff.md, "Final gradients"), while the walk goes on through the
    /// earlier layers. The gradient is the one the returned [`Gradients`] holds. An error of the
    /// hook ends the backward with that error.
    pub fn backward_with(&self, hook: &mut GradientHook<'_>) -> Result<Gradients> {
        self.backward_walk(Some(hook))
    }

    fn backward_walk(&self, mut hook: Option<&mut GradientHook<'_>>) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(EngineError::arg(
                "backward",
                self.shape(),
                "needs a scalar (one element) loss",
            ));
        }
        let _guard = no_grad();
        let mut pending: HashMap<usize, Tensor> = HashMap::new();
        // the seed lives on the loss's device, so every backward sees gradients on its own device
        let seed = Tensor::ones(self.shape(), self.dtype()).to(self.device())?;
        pending.insert(self.id(), seed);
        let mut leaves = Gradients::default();
        let order = topological_order(self);
        // only a hook needs to know when a leaf is done; without one, leaves are stored when reached
        let mut consumers = match hook {
            Some(_) => leaf_consumers(&order),
            None => HashMap::new(),
        };
        for t in order.iter().rev() {
            let grad = pending.remove(&t.id());
            let Some(op) = t.op() else {
                if let Some(grad) = grad {
                    // a leaf no op uses (the loss itself), or any leaf without a hook
                    if let Some(hook) = hook.as_mut() {
                        hook(t, &grad)?;
                    }
                    leaves.map.insert(t.id(), grad);
                }
                continue;
            };
            if let Some(grad) = grad {
                let input_grads = (op.backward)(&grad)?;
                for (input, g) in op.inputs.iter().zip(input_grads) {
                    let Some(g) = g else { continue };
                    if !input.requires_grad() {
                        continue;
                    }
                    if g.shape() != input.shape() {
                        return Err(EngineError::shape(op.name, g.shape(), input.shape()));
                    }
                    let summed = match pending.remove(&input.id()) {
                        Some(previous) => previous.add(&g)?,
                        None => g,
                    };
                    pending.insert(input.id(), summed);
                }
            }
            let Some(hook) = hook.as_mut() else { continue };
            // this op (whether or not a gradient reached it) has added all it will to its inputs
            for input in op
                .inputs
                .iter()
                .filter(|i| i.requires_grad() && i.op().is_none())
            {
                let left = consumers.get_mut(&input.id()).expect("counted above");
                *left -= 1;
                if *left == 0 {
                    if let Some(grad) = pending.remove(&input.id()) {
                        hook(input, &grad)?;
                        leaves.map.insert(input.id(), grad);
                    }
                }
            }
        }
        Ok(leaves)
    }
}
