//! Activation checkpointing (docs/autodiff.md, "Recomputation"): trade compute for memory by not
//! keeping a sub-network's intermediate tensors for the backward and computing them again there.
//!
//! [`checkpointed`]`(x, params, f)` records y = f(x) as one op. Its forward runs f without the
//! graph, so f's intermediates are freed when f returns and only x (and y) stay alive. Its backward
//! receives dy, runs f again on a leaf copy of x with the graph on, and back-propagates through the
//! recomputed graph the scalar s = sum(y * dy): ds/dy = dy exactly, so the gradients that reach x
//! and the parameters are those of the graph that was not kept, value for value. They are returned
//! as the op's input gradients (x first, then `params` in order), so the outer backward adds them
//! up as it does for every op. The peak memory of a backward is then the kept inputs of every
//! checkpointed piece plus the intermediates of one piece at a time.
//!
//! f must compute the same values both times: a sub-network that draws random numbers (drop path)
//! starts both calls from the same generator state (model/src/nat.rs does it).

use crate::autograd::{enable_grad, no_grad};
use crate::{is_grad_enabled, Result, Tensor};

/// y = f(x), recomputed in the backward instead of kept (module docs). `params`: the leaves f
/// reads besides x whose gradients are wanted. Without the graph (no input needs a gradient, or
/// inside [`no_grad`]) it is f(x).
pub fn checkpointed(
    x: &Tensor,
    params: &[Tensor],
    f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !is_grad_enabled() || !(x.requires_grad() || params.iter().any(Tensor::requires_grad)) {
        return f(x);
    }
    let y = {
        let _guard = no_grad();
        f(x)?
    };
    let (saved_x, saved_params) = (x.detach(), params.to_vec());
    let backward = Box::new(move |dy: &Tensor| -> Result<Vec<Option<Tensor>>> {
        let _guard = enable_grad();
        let leaf = saved_x.with_grad();
        let grads = f(&leaf)?.mul(dy)?.sum_all()?.backward()?;
        let mut out = vec![grads.get(&leaf).cloned()];
        out.extend(saved_params.iter().map(|p| grads.get(p).cloned()));
        Ok(out)
    });
    let mut inputs = vec![x];
    inputs.extend(params);
    Ok(Tensor::from_storage_op_like(
        &y,
        "checkpointed",
        &inputs,
        backward,
    ))
}
