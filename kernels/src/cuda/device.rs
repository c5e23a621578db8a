//! The process-wide GPU: guarded creation, what it is, memory helpers, compiled-module cache.
//!
//! cudarc loads libcuda on the first driver call and panics when it is missing. [`GpuDevice::get`]
//! checks for the library first and catches any panic, so a machine without a GPU gets the error
//! "no CUDA device: use --device cpu (<reason>)", never a crash. The result (device or error) is
//! computed once per process (OnceLock).

use super::nvrtc::{self, Source};
use super::{panic_message, Result};
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// What the GPU is.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_memory_bytes: usize,
    pub multiprocessors: i32,
    /// CUDA driver API version, e.g. 13000 for 13.0.
    pub driver_version: i32,
    /// libnvrtc's (major, minor).
    pub nvrtc_version: (i32, i32),
    /// The NVRTC target the kernels are compiled for, e.g. "sm_90".
    pub arch: &'static str,
}

/// Device 0, its default stream, and the kernels compiled for it so far.
pub struct GpuDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: GpuInfo,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
}

static DEVICE: OnceLock<std::result::Result<GpuDevice, String>> = OnceLock::new();

fn no_device(reason: impl std::fmt::Display) -> String {
    format!("no CUDA device: use --device cpu ({reason})")
}

impl GpuDevice {
    /// The GPU of this process (device 0), created on first use; an error value when there is none.
    pub fn get() -> Result<&'static GpuDevice> {
        DEVICE
            .get_or_init(Self::create)
            .as_ref()
            .map_err(|e| e.clone())
    }

    fn create() -> Result<GpuDevice> {
        let present = catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false);
        if !present {
            return Err(no_device("libcuda not found"));
        }
        match catch_unwind(AssertUnwindSafe(Self::create_unguarded)) {
            Ok(result) => result,
            Err(p) => Err(no_device(panic_message(p))),
        }
    }

    fn create_unguarded() -> Result<GpuDevice> {
        let count = CudaContext::device_count().map_err(no_device)?;
        if count < 1 {
            return Err(no_device("the driver reports 0 devices"));
        }
        let ctx = CudaContext::new(0).map_err(no_device)?;
        let stream = ctx.default_stream();
        let name = ctx.name().map_err(|e| format!("cuDeviceGetName: {e}"))?;
        let compute_capability = ctx
            .compute_capability()
            .map_err(|e| format!("compute capability: {e}"))?;
        let total_memory_bytes = ctx
            .total_mem()
            .map_err(|e| format!("cuDeviceTotalMem: {e}"))?;
        let multiprocessors = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| format!("multiprocessor count: {e}"))?;
        let mut driver_version = 0;
        unsafe { sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(|e| format!("cuDriverGetVersion: {e}"))?;
        let nvrtc_version = nvrtc::nvrtc_version()?;
        let arch = nvrtc::arch_for(compute_capability.0, compute_capability.1)?;
        Ok(GpuDevice {
            ctx,
            stream,
            info: GpuInfo {
                name,
                compute_capability,
                total_memory_bytes,
                multiprocessors,
                driver_version,
                nvrtc_version,
                arch,
            },
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Device memory in use and in total, in bytes: total minus free as the driver reports it,
    /// so it counts every process's allocations and memory the allocator keeps cached.
    pub fn memory(&self) -> Result<(usize, usize)> {
        let (free, total) = self
            .ctx
            .mem_get_info()
            .map_err(|e| format!("CUDA mem_get_info: {e}"))?;
        Ok((total.saturating_sub(free), total))
    }

    /// Wait for all work queued on the stream; surfaces asynchronous kernel errors.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| format!("CUDA stream synchronize: {e}"))
    }

    /// Copy a host slice to a new device buffer.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        self.stream
            .clone_htod(host)
            .map_err(|e| format!("upload of {} elements: {e}", host.len()))
    }

    /// Copy a device buffer back to the host (waits for the stream).
    pub fn download<T: DeviceRepr>(&self, dev: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream
            .clone_dtoh(dev)
            .map_err(|e| format!("download of {} elements: {e}", dev.len()))
    }

    /// A device buffer for a kernel that writes every element of it (contents unspecified until
    /// then; the kernel tests poison their outputs, so a kernel that misses an element fails).
    pub fn uninit<T: DeviceRepr>(&self, len: usize) -> Result<CudaSlice<T>> {
        // SAFETY: device memory of a `DeviceRepr` type; it is never read before a kernel writes it.
        unsafe { self.stream.alloc(len) }.map_err(|e| format!("alloc of {len} elements: {e}"))
    }

    /// A zero-filled device buffer.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros(len)
            .map_err(|e| format!("alloc of {len} elements: {e}"))
    }

    /// Milliseconds per call of `f`, run `reps` times between two CUDA events on the stream
    /// (the caller warms up first and takes the median of several such samples).
    pub fn time_ms(&self, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
        let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let new = || {
            self.ctx
                .new_event(flags)
                .map_err(|e| format!("cuEventCreate: {e}"))
        };
        let (start, end) = (new()?, new()?);
        start
            .record(&self.stream)
            .map_err(|e| format!("cuEventRecord: {e}"))?;
        for _ in 0..reps {
            f()?;
        }
        end.record(&self.stream)
            .map_err(|e| format!("cuEventRecord: {e}"))?;
        end.synchronize()
            .map_err(|e| format!("waiting for the timed work: {e}"))?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| format!("cuEventElapsedTime: {e}"))?;
        Ok(ms as f64 / reps.max(1) as f64)
    }

    /// A kernel of `source`, compiled with NVRTC for this device on first use and cached.
    pub fn function(&self, source: Source, name: &'static str) -> Result<CudaFunction> {
        let key = (source.name, name);
        if let Some(f) = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(f.clone());
        }
        let module = self.module(source)?;
        let f = module
            .load_function(name)
            .map_err(|e| format!("kernel {name} in {}: {e}", source.name))?;
        self.functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, f.clone());
        Ok(f)
    }

    fn module(&self, source: Source) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = modules.get(source.name) {
            return Ok(m.clone());
        }
        let ptx = nvrtc::compile(source, self.info.arch)?;
        let module = self
            .ctx
            .load_module(ptx)
            .map_err(|e| format!("loading {} ({}): {e}", source.name, self.info.arch))?;
        modules.insert(source.name, module.clone());
        Ok(module)
    }
}

/// The environment variable that makes every skipped GPU test fail (the packed GPU check sets it):
/// on a GPU machine a test that cannot reach the device must not pass vacuously.
pub const REQUIRE_GPU: &str = "DINONAT_REQUIRE_GPU";

/// A GPU test that cannot run: prints "skipped: `reason`", or panics with the reason when
/// `DINONAT_REQUIRE_GPU=1`. The one helper every GPU test's skip goes through.
pub fn skip_gpu_test(reason: &str) {
    if std::env::var(REQUIRE_GPU).as_deref() == Ok("1") {
        panic!("{REQUIRE_GPU}=1 but this GPU test cannot run: {reason}");
    }
    println!("skipped: {reason}");
}
