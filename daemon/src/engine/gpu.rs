//! What the TensorRT engine cache key needs to know about the GPU stack: the GPU's name and
//! compute capability (from the CUDA driver) and TensorRT's version (from libnvinfer). Both are
//! loaded at run time, like ONNX Runtime, so the binary has no GPU link-time dependency.

use std::ffi::{c_char, c_int, CStr};
use std::sync::{Mutex, OnceLock};

use libloading::{Library, Symbol};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuFacts {
    /// e.g. `NVIDIA H200 (sm_90)`.
    pub gpu: String,
    /// e.g. `10.3.0`.
    pub tensorrt: String,
}

/// `INFERD_SIMULATE_TENSORRT`: `slow:MS` pretends TensorRT registered and an engine build takes
/// MS milliseconds (the session runs on the CPU); `fail` makes registration fail. It exists so
/// the engine-build lifecycle (fallback, status, cache) is testable on machines with no GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simulation {
    Slow(u64),
    Fail,
}

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
pub fn facts(device: i32) -> Result<GpuFacts, String> {
    if simulation().is_some() {
        return Ok(GpuFacts {
            gpu: "simulated GPU".into(),
            tensorrt: "simulated".into(),
        });
    }
    type Probed = Vec<(i32, Result<GpuFacts, String>)>;
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

fn open(names: &[&str]) -> Result<Library, String> {
    let mut errors = Vec::new();
    for name in names {
        // SAFETY: loading a vendor library runs its initialisers; these are the libraries ONNX
        // Runtime's GPU providers load anyway.
        match unsafe { Library::new(*name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(errors.join("; "))
}

fn probe(device: i32) -> Result<GpuFacts, String> {
    let cuda = open(&["libcuda.so.1", "libcuda.so"]).map_err(|e| format!("no CUDA driver: {e}"))?;
    let nvinfer = open(&["libnvinfer.so.10", "libnvinfer.so"])
        .map_err(|e| format!("TensorRT is not installed: {e}"))?;
    type Init = unsafe extern "C" fn(u32) -> c_int;
    type DeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type GetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type GetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
    type Version = unsafe extern "C" fn() -> i32;
    // SAFETY: the signatures are those of the CUDA driver API and TensorRT's C entry point.
    unsafe {
        let sym = |lib: &'static str, e: libloading::Error| format!("{lib}: {e}");
        let init: Symbol<Init> = cuda.get(b"cuInit\0").map_err(|e| sym("libcuda", e))?;
        let device_get: Symbol<DeviceGet> =
            cuda.get(b"cuDeviceGet\0").map_err(|e| sym("libcuda", e))?;
        let get_name: Symbol<GetName> = cuda
            .get(b"cuDeviceGetName\0")
            .map_err(|e| sym("libcuda", e))?;
        let attr: Symbol<GetAttribute> = cuda
            .get(b"cuDeviceGetAttribute\0")
            .map_err(|e| sym("libcuda", e))?;
        let version: Symbol<Version> = nvinfer
            .get(b"getInferLibVersion\0")
            .map_err(|e| sym("libnvinfer", e))?;
        let check = |what: &str, rc: c_int| match rc {
            0 => Ok(()),
            rc => Err(format!("CUDA driver: {what} failed with error {rc}")),
        };
        check("cuInit", init(0))?;
        let mut dev = 0;
        check("cuDeviceGet", device_get(&mut dev, device))?;
        let mut name = [0 as c_char; 256];
        check("cuDeviceGetName", get_name(name.as_mut_ptr(), 256, dev))?;
        let (mut major, mut minor) = (0, 0);
        // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
        check("cuDeviceGetAttribute", attr(&mut major, 75, dev))?;
        check("cuDeviceGetAttribute", attr(&mut minor, 76, dev))?;
        let name = CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
        // NV_TENSORRT_VERSION: major * 10000 + minor * 100 + patch (TensorRT 10).
        let v = version();
        Ok(GpuFacts {
            gpu: format!("{name} (sm_{major}{minor})"),
            tensorrt: format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100),
        })
    }
}
