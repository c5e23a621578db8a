//! `Tensor`: a cheap handle (an `Arc`) to a node holding shared storage, a layout (shape, strides,
//! offset), the dtype and, when made by an op that needs gradients, the op that made it.

use crate::autograd::{is_grad_enabled, BackwardFn, Op};
use crate::kernels::cuda::{reduce as cuda_reduce, CudaSlice, GpuDevice};
use crate::kernels::Float;
use crate::layout::Layout;
use crate::storage::{cuda_err, Device, Storage};
use crate::{with_dtype, DType, Element, EngineError, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// An n-dimensional array with reverse-mode autodiff. Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct Tensor(Arc<Node>);

struct Node {
    id: usize,
    storage: Arc<RwLock<Storage>>,
    layout: Layout,
    dtype: DType,
    device: Device,
    requires_grad: bool,
    name: Option<String>,
    op: Option<Op>,
}

/// Frees a dropped graph iteratively: a long chain of ops would otherwise drop recursively, one
/// stack frame per op.
impl Drop for Node {
    fn drop(&mut self) {
        let Some(op) = self.op.take() else { return };
        let mut stack = op.inputs;
        while let Some(t) = stack.pop() {
            if let Ok(mut node) = Arc::try_unwrap(t.0) {
                if let Some(op) = node.op.take() {
                    stack.extend(op.inputs);
                }
            }
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor(id={}, shape={:?}, dtype={:?}",
            self.id(),
            self.shape(),
            self.dtype()
        )?;
        if let Some(name) = self.name() {
            write!(f, ", name={name}")?;
        }
        if let Some(op) = self.op() {
            write!(f, ", op={}", op.name)?;
        }
        write!(f, ")")
    }
}

impl Tensor {
    fn from_node(
        storage: Arc<RwLock<Storage>>,
        layout: Layout,
        requires_grad: bool,
        name: Option<String>,
        op: Option<Op>,
    ) -> Tensor {
        let (dtype, device) = {
            let s = storage.read().unwrap_or_else(|e| e.into_inner());
            (s.dtype(), s.device())
        };
        Tensor(Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage,
            layout,
            dtype,
            device,
            requires_grad,
            name,
            op,
        }))
    }

    /// A leaf over a fresh buffer (no gradient).
    pub(crate) fn from_data<T: Element>(data: Vec<T>, shape: &[usize]) -> Tensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        let storage = Arc::new(RwLock::new(Storage::Cpu(T::wrap(data))));
        Tensor::from_node(storage, Layout::contiguous(shape), false, None, None)
    }

    /// Records `backward` when gradients are enabled and some input requires grad.
    fn maybe_op(name: &'static str, inputs: &[&Tensor], backward: BackwardFn) -> Option<Op> {
        if is_grad_enabled() && inputs.iter().any(|t| t.requires_grad()) {
            Some(Op {
                name,
                inputs: inputs.iter().map(|&t| t.clone()).collect(),
                backward,
            })
        } else {
            None
        }
    }

    /// A leaf over a fresh row-major buffer of any device and dtype (no gradient).
    pub(crate) fn from_storage(data: Storage, shape: &[usize]) -> Tensor {
        let storage = Arc::new(RwLock::new(data));
        Tensor::from_node(storage, Layout::contiguous(shape), false, None, None)
    }

    /// The result of an op over a fresh row-major buffer of any device and dtype.
    pub(crate) fn from_storage_op(
        data: Storage,
        shape: &[usize],
        name: &'static str,
        inputs: &[&Tensor],
        backward: BackwardFn,
    ) -> Tensor {
        let op = Tensor::maybe_op(name, inputs, backward);
        let storage = Arc::new(RwLock::new(data));
        let requires_grad = op.is_some();
        Tensor::from_node(storage, Layout::contiguous(shape), requires_grad, None, op)
    }

    /// Records op `name` on a fresh, not yet shared result `y` (for ops whose backward keeps the
    /// output: it holds a detached handle, so the graph has no cycle).
    pub(crate) fn from_storage_op_like(
        y: &Tensor,
        name: &'static str,
        inputs: &[&Tensor],
        backward: BackwardFn,
    ) -> Tensor {
        let op = Tensor::maybe_op(name, inputs, backward);
        let requires_grad = op.is_some();
        Tensor::from_node(
            y.0.storage.clone(),
            y.0.layout.clone(),
            requires_grad,
            None,
            op,
        )
    }

    /// A view of `src`'s storage under a new layout, recorded as op `name`.
    pub(crate) fn view_op(
        src: &Tensor,
        layout: Layout,
        name: &'static str,
        backward: BackwardFn,
    ) -> Tensor {
        let op = Tensor::maybe_op(name, &[src], backward);
        let requires_grad = op.is_some();
        Tensor::from_node(src.0.storage.clone(), layout, requires_grad, None, op)
    }

    /// A detached leaf over `data` (a buffer as long as this tensor's storage, e.g. a widened
    /// copy of it) read through this tensor's layout.
    pub(crate) fn over_storage(&self, data: Storage) -> Tensor {
        let storage = Arc::new(RwLock::new(data));
        Tensor::from_node(storage, self.0.layout.clone(), false, None, None)
    }

    /// A detached leaf over this tensor's storage read through `other`'s layout.
    pub(crate) fn with_layout_of(&self, other: &Tensor) -> Tensor {
        Tensor::from_node(
            self.0.storage.clone(),
            other.0.layout.clone(),
            false,
            None,
            None,
        )
    }

    // ---- devices (docs/gpu-ops.md) ---------------------------------------------------------

    pub fn is_cuda(&self) -> bool {
        matches!(self.device(), Device::Cuda(_))
    }

    /// Calls `f` with the GPU and this f32 CUDA tensor's elements in row-major order from index
    /// 0: the storage itself when the layout is contiguous at offset 0, else a strided copy. A CPU
    /// or a BF16 tensor is an error naming `op` (the backend widens BF16 first).
    pub(crate) fn with_cuda<R>(
        &self,
        op: &'static str,
        f: impl FnOnce(&'static GpuDevice, &CudaSlice<f32>) -> Result<R>,
    ) -> Result<R> {
        let guard = self.read_storage();
        let Some(cs) = guard.cuda() else {
            return Err(EngineError::arg(
                op,
                self.shape(),
                "expected a CUDA tensor, got a CPU one (use .to)",
            ));
        };
        let data = cs.f32(op, self.shape())?;
        let l = &self.0.layout;
        if l.is_contiguous() && l.offset == 0 {
            return f(cs.dev, data);
        }
        let dev = cs.dev;
        let mut buf = dev
            .uninit::<f32>(l.numel().max(1))
            .map_err(cuda_err(op, self.shape()))?;
        cuda_reduce::strided_copy(dev, data, &l.shape, &l.strides, l.offset, &mut buf)
            .map_err(cuda_err(op, self.shape()))?;
        drop(guard);
        f(dev, &buf)
    }

    /// The same values on `device`: an explicit copy (recorded: the gradient goes back to this
    /// tensor's device), in the same dtype. f32 and BF16 tensors go to CUDA (f64 does not).
    /// Without a GPU: the error "no CUDA device: use --device cpu (...)".
    pub fn to(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let back = self.device();
        let backward: BackwardFn = Box::new(move |g| Ok(vec![Some(g.to(back)?)]));
        let data = crate::backend::to_device(self, device, "to")?;
        Ok(Tensor::from_storage_op(
            data,
            self.shape(),
            "to",
            &[self],
            backward,
        ))
    }

    // ---- creation -------------------------------------------------------------------------

    /// A tensor of `shape` over `data` (row-major).
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(EngineError::arg(
                "from_vec",
                shape,
                format!("{} elements given for {} places", data.len(), n),
            ));
        }
        Ok(Tensor::from_data(data, shape))
    }
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        let n = shape.iter().product();
        with_dtype!(dtype, T => {
            let mut v = T::alloc(n);
            v.fill(T::from_f64(value));
            Tensor::from_data(v, shape)
        })
    }
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 0.0, dtype)
    }
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 1.0, dtype)
    }
    /// A 0-dimensional tensor.
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Tensor::full(&[], value, dtype)
    }

    /// A named leaf that requires grad; the name is its key in checkpoints (safetensors).
    pub fn parameter(name: impl Into<String>, value: &Tensor) -> Tensor {
        let t = value.contiguous_copy_if_view();
        Tensor::from_node(
            t.0.storage.clone(),
            t.0.layout.clone(),
            true,
            Some(name.into()),
            None,
        )
    }

    /// A leaf sharing this tensor's storage that requires grad (unnamed; inputs of gradient checks).
    pub fn with_grad(&self) -> Tensor {
        Tensor::from_node(
            self.0.storage.clone(),
            self.0.layout.clone(),
            true,
            None,
            None,
        )
    }

    /// A leaf sharing this tensor's storage, cut from the graph (no gradient flows through it).
    pub fn detach(&self) -> Tensor {
        Tensor::from_node(
            self.0.storage.clone(),
            self.0.layout.clone(),
            false,
            None,
            None,
        )
    }

    fn contiguous_copy_if_view(&self) -> Tensor {
        if self.is_contiguous() && self.0.layout.offset == 0 && self.numel() == self.storage_len() {
            self.detach()
        } else {
            let _guard = crate::autograd::no_grad();
            self.contiguous().detach()
        }
    }

    // ---- accessors ------------------------------------------------------------------------

    /// Unique per node (a view or a detached copy gets a new id).
    pub fn id(&self) -> usize {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.0.layout.shape
    }
    pub fn rank(&self) -> usize {
        self.0.layout.shape.len()
    }
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    pub fn strides(&self) -> &[usize] {
        &self.0.layout.strides
    }
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> Device {
        self.0.device
    }
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    pub fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }
    /// Whether two tensors are views of one buffer.
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }
    fn storage_len(&self) -> usize {
        self.read_storage().len()
    }
    pub(crate) fn read_storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn write_storage(&self) -> std::sync::RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn check_dtype(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.dtype() != other.dtype() {
            return Err(EngineError::DTypeMismatch {
                op,
                lhs: self.dtype(),
                rhs: other.dtype(),
            });
        }
        Ok(())
    }

    // ---- reading and writing data ----------------------------------------------------------

    /// Calls `f` with the storage slice and this tensor's layout in it (no copy; any strides).
    /// Panics if `T` is not this tensor's dtype (an engine bug, never user input).
    pub(crate) fn with_strided<T: Element, R>(&self, f: impl FnOnce(&[T], &Layout) -> R) -> R {
        let guard = self.read_storage();
        let s = T::slice(guard.cpu()).expect("with_strided: dtype of T matches the tensor");
        f(s, &self.0.layout)
    }

    /// Calls `f` with the elements in row-major order: borrowed when contiguous, else gathered
    /// into a pooled buffer.
    pub(crate) fn with_contiguous<T: Element, R>(&self, f: impl FnOnce(&[T]) -> R) -> R {
        let guard = self.read_storage();
        let s = T::slice(guard.cpu()).expect("with_contiguous: dtype of T matches the tensor");
        let l = &self.0.layout;
        if l.is_contiguous() {
            return f(&s[l.offset..l.offset + l.numel()]);
        }
        let mut buf = T::alloc(l.numel());
        let mut i = 0;
        l.for_each_offset(|o| {
            buf[i] = s[o];
            i += 1;
        });
        drop(guard);
        let r = f(&buf);
        T::recycle(buf);
        r
    }

    /// The elements in row-major order, as `T` (an error if the dtype differs; a CUDA tensor is
    /// copied to the host, a driver failure is an error).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if self.dtype() != T::DTYPE {
            return Err(EngineError::DTypeMismatch {
                op: "to_vec",
                lhs: self.dtype(),
                rhs: T::DTYPE,
            });
        }
        if self.is_cuda() {
            return self.on_host("to_vec")?.to_vec::<T>();
        }
        Ok(self.with_contiguous(|s: &[T]| s.to_vec()))
    }

    /// The elements in row-major order, converted to f64 (any dtype). A CUDA tensor is copied to
    /// the host and panics if the driver fails: [`Tensor::try_to_vec_f64`] returns that error.
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.try_to_vec_f64().unwrap_or_else(|e| {
            panic!("to_vec_f64 of a CUDA tensor: {e} (try_to_vec_f64 returns it)")
        })
    }

    /// [`Tensor::to_vec_f64`], with a CUDA driver failure as an error (a host tensor never fails).
    pub fn try_to_vec_f64(&self) -> Result<Vec<f64>> {
        if self.is_cuda() {
            return self.on_host("to_vec_f64")?.try_to_vec_f64();
        }
        Ok(
            with_dtype!(self.dtype(), T => self.with_contiguous(|s: &[T]| s.iter().map(|v| v.to_f64()).collect())),
        )
    }

    /// A detached host copy of a CUDA tensor (same dtype), for reading its values.
    fn on_host(&self, op: &'static str) -> Result<Tensor> {
        let data = crate::backend::to_device(&self.detach(), Device::Cpu, op)?;
        Ok(Tensor::from_storage(data, self.shape()))
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(EngineError::arg(
                "item",
                self.shape(),
                "needs exactly one element",
            ));
        }
        Ok(self.try_to_vec_f64()?[0])
    }

    /// Mutates the elements in place (optimizer steps, EMA). Needs a contiguous tensor of dtype T;
    /// every view of the storage sees the change. On CUDA: one download and one upload. Not recorded in the graph. `f` holds the
    /// storage's write lock: it must not read this tensor (or a view of it) itself.
    pub fn update_in_place<T: Element, R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        if self.dtype() != T::DTYPE {
            return Err(EngineError::DTypeMismatch {
                op: "update_in_place",
                lhs: self.dtype(),
                rhs: T::DTYPE,
            });
        }
        if !self.is_contiguous() {
            return Err(EngineError::arg(
                "update_in_place",
                self.shape(),
                "needs a contiguous tensor",
            ));
        }
        crate::backend::update_in_place(self, f)
    }

    /// Copies `src`'s values into this tensor's storage (same shape and dtype).
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() {
            return Err(EngineError::shape("assign", self.shape(), src.shape()));
        }
        self.check_dtype("assign", src)?;
        if !self.is_contiguous() {
            return Err(EngineError::arg(
                "assign",
                self.shape(),
                "needs a contiguous destination",
            ));
        }
        crate::backend::assign(self, src)
    }
}
