//! What inferd asks the GPU stack directly: for the TensorRT engine cache key, the GPU's name
//! and compute capability (CUDA driver) and TensorRT's version (libnvinfer); for the memory
//! budget, how much of a device's memory is in use; for KV caches kept in GPU memory, zeroing
//! and strided copies between them (ONNX Runtime copies only whole tensors). The libraries are
//! loaded at run time, like ONNX Runtime, so the binary has no GPU link-time dependency.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use libloading::{Library, Symbol};

/// Why a GPU question has no answer: the driver or TensorRT is missing, or a driver call failed.
/// Kept (cloned) with a device's probe, so the same reason is told each time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuError {
    #[error("no CUDA driver: {0}")]
    NoDriver(NotLoaded),
    #[error("{library}: {message}")]
    Symbol {
        library: &'static str,
        message: String,
    },
    #[error("CUDA driver: {call} failed with error {code}")]
    Call { call: &'static str, code: i32 },
    #[error("TensorRT is not installed: {0}")]
    NoTensorRt(NotLoaded),
    #[error("no /proc/self/status to measure the simulated GPU's memory")]
    NoRss,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuFacts {
    /// e.g. `NVIDIA H200 (sm_90)`.
    pub gpu: String,
    /// e.g. `10.3.0`.
    pub tensorrt: String,
}

/// `INFERD_SIMULATE_TENSORRT`, in builds with the `simulate-gpu` feature only (the end-to-end
/// tests enable it; release builds and the .deb do not have it): `slow:MS` pretends TensorRT
/// registered and an engine build takes MS milliseconds (the session runs on the CPU); `fail`
/// makes registration fail. It exists so the engine-build lifecycle (fallback, status, cache)
/// and the GPU memory budget are testable on machines with no GPU: a simulated device's memory
/// in use is the process's RSS, where the simulated sessions really live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simulation {
    Slow(u64),
    Fail,
}

#[cfg(not(feature = "simulate-gpu"))]
pub fn simulation() -> Option<Simulation> {
    None
}

#[cfg(feature = "simulate-gpu")]
pub fn simulation() -> Option<Simulation> {
    let v = std::env::var("INFERD_SIMULATE_TENSORRT").ok()?;
    match v.as_str() {
        "fail" => Some(Simulation::Fail),
        s => s
            .strip_prefix("slow:")
            .and_then(|ms| ms.parse().ok())
            .map(Simulation::Slow),
    }
}

/// Probes once per device and process; the answer (or why there is none) is kept.
pub fn facts(device: i32) -> Result<GpuFacts, GpuError> {
    if simulation().is_some() {
        return Ok(GpuFacts {
            gpu: "simulated GPU".into(),
            tensorrt: "simulated".into(),
        });
    }
    type Probed = Vec<(i32, Result<GpuFacts, GpuError>)>;
    static CACHE: OnceLock<Mutex<Probed>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, r)) = cache.iter().find(|(d, _)| *d == device) {
        return r.clone();
    }
    let r = probe(device);
    cache.push((device, r.clone()));
    r
}

/// What the dynamic loader said for each name tried (kept as text: probe results are cached
/// and cloned, and `libloading::Error` is not `Clone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLoaded(Vec<String>);

impl std::fmt::Display for NotLoaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

fn open(names: &[&str]) -> Result<Library, NotLoaded> {
    let mut errors = Vec::new();
    for name in names {
        // SAFETY: loading a vendor library runs its initialisers; these are the libraries ONNX
        // Runtime's GPU providers load anyway.
        match unsafe { Library::new(*name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(NotLoaded(errors))
}

fn probe(device: i32) -> Result<GpuFacts, GpuError> {
    let gpu = driver()?.describe(device)?;
    let nvinfer = open(&["libnvinfer.so.10", "libnvinfer.so"]).map_err(GpuError::NoTensorRt)?;
    // SAFETY: TensorRT's C entry point `int32_t getInferLibVersion()`.
    let v = unsafe {
        let version: Symbol<unsafe extern "C" fn() -> i32> = nvinfer
            .get(b"getInferLibVersion\0")
            .map_err(|e| GpuError::Symbol {
            library: "libnvinfer",
            message: e.to_string(),
        })?;
        version()
    };
    // NV_TENSORRT_VERSION: major * 10000 + minor * 100 + patch (TensorRT 10).
    Ok(GpuFacts {
        gpu,
        tensorrt: format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100),
    })
}

/// Bytes in use on CUDA device `device` (all processes: what the driver reports as total minus
/// free). The device's primary context, which ONNX Runtime's CUDA and TensorRT providers share,
/// is retained on first use and kept.
pub fn memory_used(device: i32) -> Result<u64, GpuError> {
    if simulation().is_some() {
        return crate::memory::rss_bytes().ok_or(GpuError::NoRss);
    }
    driver()?.memory_used(device)
}

/// A strided copy within one device's memory: `height` blocks of `width` bytes, each block
/// `src_pitch` (`dst_pitch`) bytes after the previous one.
#[derive(Debug, Clone, Copy)]
pub struct Copy2d {
    pub src: *const c_void,
    pub src_pitch: usize,
    pub dst: *mut c_void,
    pub dst_pitch: usize,
    pub width: usize,
    pub height: usize,
}

/// Zeroes `bytes` of device memory at `dst`, then runs `copies`, all in CUDA device
/// `ordinal`'s memory, and waits until they are done: ONNX Runtime's next run reads the result
/// on a stream of its own.
///
/// # Safety
/// `dst` and every copy's blocks must lie in live allocations of that device.
pub unsafe fn device_fill(
    ordinal: i32,
    zero: Option<(*mut c_void, usize)>,
    copies: &[Copy2d],
) -> Result<(), GpuError> {
    let d = driver()?;
    d.within(ordinal, || {
        if let Some((dst, bytes)) = zero {
            // SAFETY: the caller's promise; a device pointer is its address as an integer.
            check("cuMemsetD8", unsafe { (d.memset)(dst as u64, 0, bytes) })?;
        }
        for c in copies {
            let m = Memcpy2d {
                src_memory_type: DEVICE,
                src_device: c.src as u64,
                src_pitch: c.src_pitch,
                dst_memory_type: DEVICE,
                dst_device: c.dst as u64,
                dst_pitch: c.dst_pitch,
                width_in_bytes: c.width,
                height: c.height,
                ..Memcpy2d::default()
            };
            // SAFETY: the caller's promise; `m` is a CUDA_MEMCPY2D.
            check("cuMemcpy2D", unsafe { (d.memcpy_2d)(&m) })?;
        }
        // SAFETY: no arguments; the context is current.
        check("cuCtxSynchronize", unsafe { (d.synchronize)() })
    })
}

const DEVICE: u32 = 2; // CU_MEMORYTYPE_DEVICE

/// cuda.h's CUDA_MEMCPY2D.
#[repr(C)]
#[derive(Default)]
struct Memcpy2d {
    src_x_in_bytes: usize,
    src_y: usize,
    src_memory_type: u32,
    src_host: usize,
    src_device: u64,
    src_array: usize,
    src_pitch: usize,
    dst_x_in_bytes: usize,
    dst_y: usize,
    dst_memory_type: u32,
    dst_host: usize,
    dst_device: u64,
    dst_array: usize,
    dst_pitch: usize,
    width_in_bytes: usize,
    height: usize,
}

/// The CUDA driver, opened and initialised once per process.
fn driver() -> Result<&'static Driver, GpuError> {
    static DRIVER: OnceLock<Result<Driver, GpuError>> = OnceLock::new();
    DRIVER
        .get_or_init(Driver::open)
        .as_ref()
        .map_err(Clone::clone)
}

type Context = *mut c_void;

/// The CUDA driver entry points inferd uses (cuda.h, API version 3020+).
struct Driver {
    device_get: unsafe extern "C" fn(*mut c_int, c_int) -> c_int,
    get_name: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int,
    get_attribute: unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int,
    retain: unsafe extern "C" fn(*mut Context, c_int) -> c_int,
    push: unsafe extern "C" fn(Context) -> c_int,
    pop: unsafe extern "C" fn(*mut Context) -> c_int,
    mem_get_info: unsafe extern "C" fn(*mut usize, *mut usize) -> c_int,
    memset: unsafe extern "C" fn(u64, u8, usize) -> c_int,
    memcpy_2d: unsafe extern "C" fn(*const Memcpy2d) -> c_int,
    synchronize: unsafe extern "C" fn() -> c_int,
    /// Retained primary contexts by ordinal, as addresses (contexts are process-wide).
    contexts: Mutex<HashMap<i32, usize>>,
    _lib: Library,
}

impl Driver {
    fn open() -> Result<Driver, GpuError> {
        let lib = open(&["libcuda.so.1", "libcuda.so"]).map_err(GpuError::NoDriver)?;
        /// SAFETY: `T` must be the symbol's C signature; the copy outlives `lib` only
        /// inside `Driver`, which keeps `lib`.
        unsafe fn get<T: Copy>(lib: &Library, name: &[u8]) -> Result<T, GpuError> {
            lib.get::<T>(name)
                .map(|s| *s)
                .map_err(|e| GpuError::Symbol {
                    library: "libcuda",
                    message: e.to_string(),
                })
        }
        // SAFETY: each type is the entry point's signature in cuda.h.
        unsafe {
            let init: unsafe extern "C" fn(u32) -> c_int = get(&lib, b"cuInit\0")?;
            check("cuInit", init(0))?;
            Ok(Driver {
                device_get: get(&lib, b"cuDeviceGet\0")?,
                get_name: get(&lib, b"cuDeviceGetName\0")?,
                get_attribute: get(&lib, b"cuDeviceGetAttribute\0")?,
                retain: get(&lib, b"cuDevicePrimaryCtxRetain\0")?,
                push: get(&lib, b"cuCtxPushCurrent_v2\0")?,
                pop: get(&lib, b"cuCtxPopCurrent_v2\0")?,
                mem_get_info: get(&lib, b"cuMemGetInfo_v2\0")?,
                memset: get(&lib, b"cuMemsetD8_v2\0")?,
                memcpy_2d: get(&lib, b"cuMemcpy2D_v2\0")?,
                synchronize: get(&lib, b"cuCtxSynchronize\0")?,
                contexts: Mutex::default(),
                _lib: lib,
            })
        }
    }

    fn device(&self, ordinal: i32) -> Result<c_int, GpuError> {
        let mut dev = 0;
        // SAFETY: an out-pointer to a local; the driver was initialised in `open`.
        check("cuDeviceGet", unsafe {
            (self.device_get)(&mut dev, ordinal)
        })?;
        Ok(dev)
    }

    /// e.g. `NVIDIA H200 (sm_90)`.
    fn describe(&self, ordinal: i32) -> Result<String, GpuError> {
        let dev = self.device(ordinal)?;
        let mut name = [0 as c_char; 256];
        let (mut major, mut minor) = (0, 0);
        // SAFETY: out-pointers to locals, the name buffer's true length.
        unsafe {
            check(
                "cuDeviceGetName",
                (self.get_name)(name.as_mut_ptr(), 256, dev),
            )?;
            // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
            check(
                "cuDeviceGetAttribute",
                (self.get_attribute)(&mut major, 75, dev),
            )?;
            check(
                "cuDeviceGetAttribute",
                (self.get_attribute)(&mut minor, 76, dev),
            )?;
        }
        // SAFETY: the driver wrote a NUL-terminated name into the zeroed buffer.
        let name = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy();
        Ok(format!("{name} (sm_{major}{minor})"))
    }

    fn memory_used(&self, ordinal: i32) -> Result<u64, GpuError> {
        let (mut free, mut total) = (0usize, 0usize);
        self.within(ordinal, || {
            // SAFETY: out-pointers to locals; the context is current.
            check("cuMemGetInfo", unsafe {
                (self.mem_get_info)(&mut free, &mut total)
            })
        })?;
        Ok(total.saturating_sub(free) as u64)
    }

    /// Runs `f` with device `ordinal`'s primary context (which ONNX Runtime's CUDA and TensorRT
    /// providers share; retained on first use and kept) current on this thread, restoring the
    /// thread's own current context afterwards.
    fn within<T>(
        &self,
        ordinal: i32,
        f: impl FnOnce() -> Result<T, GpuError>,
    ) -> Result<T, GpuError> {
        let ctx = {
            let mut contexts = self.contexts.lock().unwrap_or_else(|p| p.into_inner());
            match contexts.get(&ordinal) {
                Some(&ctx) => ctx as Context,
                None => {
                    let dev = self.device(ordinal)?;
                    let mut ctx = std::ptr::null_mut();
                    // SAFETY: an out-pointer to a local.
                    check("cuDevicePrimaryCtxRetain", unsafe {
                        (self.retain)(&mut ctx, dev)
                    })?;
                    contexts.insert(ordinal, ctx as usize);
                    ctx
                }
            }
        };
        // SAFETY: `ctx` is a retained primary context, pushed and popped on this thread only.
        check("cuCtxPushCurrent", unsafe { (self.push)(ctx) })?;
        let r = f();
        let mut popped = std::ptr::null_mut();
        // SAFETY: pops what was pushed above.
        let rc = unsafe { (self.pop)(&mut popped) };
        if rc != 0 {
            tracing::warn!("CUDA driver: cuCtxPopCurrent failed with error {rc}");
        }
        r
    }
}

fn check(call: &'static str, rc: c_int) -> Result<(), GpuError> {
    match rc {
        0 => Ok(()),
        code => Err(GpuError::Call { call, code }),
    }
}

#[cfg(test)]
mod tests {
    /// Without a GPU the answer is a reason, not a crash; with one, bytes in use (the context
    /// alone takes some).
    #[test]
    fn device_memory_is_measured_or_explained() {
        match super::memory_used(0) {
            Ok(bytes) => assert!(bytes > 0),
            Err(e) => assert!(e.to_string().contains("CUDA driver"), "{e}"),
        }
    }

    /// Device copies without a GPU are an error that says why, not a crash. (The copies
    /// themselves run on a GPU only: `make gpu-bench` checks the text they lead to.)
    #[test]
    fn device_copies_run_or_explain() {
        // SAFETY: nothing to zero or copy.
        match unsafe { super::device_fill(0, None, &[]) } {
            Ok(()) => {}
            Err(e) => assert!(e.to_string().contains("CUDA driver"), "{e}"),
        }
    }
}
