//! q, k, v of an attention op as the kernels read them (the ops build them, both backends read
//! them; a leaf, so the backends need not import from the dispatch layer above them).

use crate::kernels::attention::HeadsView;
use crate::Tensor;

/// q, k, v of an attention op as the kernels read them: each tensor and its view.
pub(crate) type Heads<'a> = [(&'a Tensor, HeadsView); 3];

/// q, k, v paired with their views.
pub(crate) fn heads(t: &[Tensor; 3], views: [HeadsView; 3]) -> Heads<'_> {
    [(&t[0], views[0]), (&t[1], views[1]), (&t[2], views[2])]
}
