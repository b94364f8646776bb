//! Finds libonnxruntime at start, and loads it for good when the first model loads.
//!
//! Nothing is linked at build time, so one binary works with whatever ONNX Runtime the device has:
//! a pip wheel on a desktop, a JetPack build on a Jetson. The search order is the config key, then
//! `ORT_DYLIB_PATH`, then the standard places; every place tried is reported when none works.
//!
//! At start the library is only probed: loaded, asked its version and providers, and unloaded,
//! so the start fails plainly when there is none and `RuntimeVersion`, `Providers` and
//! `inferd check` tell the truth before any model loads. Its environment (about 10 MiB of
//! resident memory) comes with the first model: a daemon with nothing loaded stays small.

use std::ffi::{c_char, c_int, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// ort is built at its lowest API level, so any ONNX Runtime from 1.17 on works.
pub const MIN_MINOR: u32 = ort::MINOR_VERSION;

const LIB_NAMES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1"];
const SYSTEM_DIRS: [&str; 7] = [
    "/usr/local/lib",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib",
    "/opt/nvidia/onnxruntime/lib",
];

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "no usable ONNX Runtime library (need version 1.{min} or newer). Places searched:\n{}\n\
         Get one with `pip install onnxruntime` (or onnxruntime-gpu), or on a Jetson use the \
         JetPack build; then set runtime.library in the config or ORT_DYLIB_PATH.",
        list(.searched),
        min = MIN_MINOR
    )]
    NotFound { searched: Vec<Skipped> },
    /// The library probed at start would not load for good (replaced or removed since).
    #[error("ONNX Runtime {path}: {message}")]
    Environment { path: PathBuf, message: String },
}

/// A candidate library that was passed over, and why.
#[derive(Debug)]
pub struct Skipped {
    pub path: PathBuf,
    /// Which rule named it: `runtime.library`, `ORT_DYLIB_PATH`, `system`...
    pub source: &'static str,
    pub why: Unusable,
}

#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("not found")]
    Missing,
    #[error("{0}")]
    Unloadable(#[from] libloading::Error),
    #[error("not an ONNX Runtime library (no OrtGetApiBase)")]
    NotOrt,
    #[error("OrtGetApiBase returned null")]
    NullBase,
    #[error("version {0} does not offer the C API inferd uses")]
    NoApi(String),
    #[error("version {0} is too old (need 1.{MIN_MINOR} or newer)")]
    TooOld(String),
}

fn list(searched: &[Skipped]) -> String {
    searched
        .iter()
        .map(|s| format!("  - {}: {}: {}", s.path.display(), s.source, s.why))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The library that serves: found and probed at start, loaded for good by the first model.
pub struct Runtime {
    pub path: PathBuf,
    /// Which rule found it: `runtime.library`, `ORT_DYLIB_PATH`, `system`...
    pub source: &'static str,
    pub version: String,
    /// Execution providers compiled into the library, e.g. `CUDAExecutionProvider`.
    pub providers: Vec<String>,
    /// Sessions are created in this environment, made by the first load that succeeds.
    env: OnceLock<ort::environment::Environment>,
    /// One load at a time makes it; a failed try is not kept, so the next load tries again.
    making: Mutex<()>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("path", &self.path)
            .field("source", &self.source)
            .field("version", &self.version)
            .field("providers", &self.providers)
            .field("loaded", &self.loaded())
            .finish()
    }
}

impl Runtime {
    /// The environment sessions are made in; the first call loads the library for good. The
    /// library must still be the one probed at start (its version keys TensorRT engine caches
    /// and is what `RuntimeVersion` says): a package upgraded since is refused until a restart.
    pub fn env(&self) -> Result<&ort::environment::Environment, RuntimeError> {
        if let Some(env) = self.env.get() {
            return Ok(env);
        }
        let _one = self.making.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(env) = self.env.get() {
            return Ok(env);
        }
        let failed = |message: String| RuntimeError::Environment {
            path: self.path.clone(),
            message,
        };
        match probe(&self.path) {
            Ok((version, _)) if version == self.version => {}
            Ok((version, _)) => {
                return Err(failed(format!(
                    "is version {version} now, {} at start: restart inferd to use it",
                    self.version
                )))
            }
            Err(why) => return Err(failed(why.to_string())),
        }
        let env = ort::init_from(&self.path)
            .map_err(|e| failed(e.to_string()))?
            .with_name("inferd")
            .with_telemetry(false)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        tracing::info!(path = %self.path.display(), version = %self.version, "loaded ONNX Runtime");
        Ok(self.env.get_or_init(|| env))
    }

    /// Whether a model has loaded the library yet.
    pub fn loaded(&self) -> bool {
        self.env.get().is_some()
    }
}

/// Candidate paths in search order, each with where it came from.
///
/// A configured `runtime.library` is the only candidate: the user named that library, and another
/// one found elsewhere would be a silent surprise.
pub fn candidates(configured: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    if let Some(p) = configured {
        return vec![(p.to_owned(), "runtime.library")];
    }
    let mut out: Vec<(PathBuf, &'static str)> = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push((PathBuf::from(p), "ORT_DYLIB_PATH"));
    }
    for dir in SYSTEM_DIRS {
        for name in LIB_NAMES {
            out.push((Path::new(dir).join(name), "system"));
        }
    }
    for capi in python_capi_dirs() {
        if let Some(lib) = newest_versioned_lib(&capi) {
            out.push((lib, "python onnxruntime"));
        }
    }
    out
}

/// `onnxruntime/capi` folders of every python3 site-packages we know how to find.
fn python_capi_dirs() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = ["/usr/lib", "/usr/local/lib", "/usr/lib64", "/opt/conda/lib"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        prefixes.push(Path::new(&venv).join("lib"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        prefixes.push(home.join(".local/lib"));
        prefixes.extend(subdirs(&home.join(".pyenv/versions")).map(|v| v.join("lib")));
    }
    let mut out = Vec::new();
    for prefix in prefixes {
        for py in subdirs(&prefix).filter(|p| file_name_starts(p, "python3")) {
            for site in ["site-packages", "dist-packages"] {
                for pkg in ["onnxruntime", "onnxruntime_gpu"] {
                    let capi = py.join(site).join(pkg).join("capi");
                    if capi.is_dir() {
                        out.push(capi);
                    }
                }
            }
        }
    }
    out
}

fn subdirs(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
}

fn file_name_starts(p: &Path, prefix: &str) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(prefix))
}

/// Wheels ship `libonnxruntime.so.1.31.1` with no unversioned link.
fn newest_versioned_lib(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| file_name_starts(p, "libonnxruntime.so"))
        .max()
}

/// What a library says about itself: its version and providers. The library is unloaded
/// again when this returns.
fn probe(path: &Path) -> Result<(String, Vec<String>), Unusable> {
    if !path.exists() {
        return Err(Unusable::Missing);
    }
    // SAFETY: loading a library runs its initialisers; libonnxruntime's are benign.
    let lib = unsafe { libloading::Library::new(path) }?;
    // SAFETY: the symbol's signature is fixed by the ONNX Runtime C API.
    let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
        unsafe { lib.get(b"OrtGetApiBase") }.map_err(|_| Unusable::NotOrt)?;
    // SAFETY: OrtGetApiBase returns a static struct; GetVersionString a static C string.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err(Unusable::NullBase);
    }
    let version = unsafe { CStr::from_ptr(((*base).GetVersionString)()) }
        .to_string_lossy()
        .into_owned();
    if minor_of(&version).is_none_or(|minor| minor < MIN_MINOR) {
        return Err(Unusable::TooOld(version));
    }
    // SAFETY: GetApi returns a static table for a supported API version, else null.
    let api = unsafe { ((*base).GetApi)(ort::sys::ORT_API_VERSION) };
    if api.is_null() {
        return Err(Unusable::NoApi(version));
    }
    // SAFETY: non-null, static, and only read while `lib` is loaded.
    let providers = available_providers(unsafe { &*api });
    Ok((version, providers))
}

fn minor_of(version: &str) -> Option<u32> {
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}

/// The first library that exists and is recent enough, probed; it loads for good with the first
/// model (`Runtime::env`).
pub fn find(configured: Option<&Path>) -> Result<Runtime, RuntimeError> {
    let mut searched = Vec::new();
    for (path, source) in candidates(configured) {
        match probe(&path) {
            Ok((version, providers)) => {
                for s in &searched {
                    let Skipped { path, source, why } = s;
                    tracing::debug!(path = %path.display(), "skipped ONNX Runtime candidate: {source}: {why}");
                }
                return Ok(Runtime {
                    path,
                    source,
                    version,
                    providers,
                    env: OnceLock::new(),
                    making: Mutex::new(()),
                });
            }
            Err(why) => searched.push(Skipped { path, source, why }),
        }
    }
    Err(RuntimeError::NotFound { searched })
}

/// Providers compiled into the library. Being listed does not mean one will register.
fn available_providers(api: &ort::sys::OrtApi) -> Vec<String> {
    let mut names: *mut *mut c_char = std::ptr::null_mut();
    let mut count: c_int = 0;
    // SAFETY: standard out-parameter call of the C API; the array is released below.
    let status = unsafe { (api.GetAvailableProviders)(&mut names, &mut count) };
    if !status.0.is_null() || names.is_null() {
        // SAFETY: a non-null status is owned by us and must be released.
        unsafe { (api.ReleaseStatus)(status.0) };
        return Vec::new();
    }
    let out = (0..count as usize)
        // SAFETY: `names` holds `count` valid C strings.
        .map(|i| {
            unsafe { CStr::from_ptr(*names.add(i)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // SAFETY: releasing what GetAvailableProviders allocated.
    let status = unsafe { (api.ReleaseAvailableProviders)(names, count) };
    if !status.0.is_null() {
        // SAFETY: as above.
        unsafe { (api.ReleaseStatus)(status.0) };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_versions() {
        assert_eq!(minor_of("1.31.1"), Some(31));
        assert_eq!(minor_of("1.20.0"), Some(20));
        assert_eq!(minor_of("2.0.0"), None);
        assert_eq!(minor_of("garbage"), None);
    }

    #[test]
    fn configured_path_is_the_only_candidate() {
        let c = candidates(Some(Path::new("/x/libonnxruntime.so")));
        assert_eq!(
            c,
            [(PathBuf::from("/x/libonnxruntime.so"), "runtime.library")]
        );
        assert!(candidates(None)
            .iter()
            .any(|(p, _)| p.starts_with("/usr/local/lib")));
    }

    #[test]
    fn not_found_lists_every_place_and_how_to_fix() {
        let e = RuntimeError::NotFound {
            searched: vec![Skipped {
                path: PathBuf::from("/a/libonnxruntime.so"),
                source: "system",
                why: Unusable::Missing,
            }],
        };
        let msg = e.to_string();
        assert!(
            msg.contains("/a/libonnxruntime.so: system: not found"),
            "{msg}"
        );
        assert!(msg.contains("pip install onnxruntime"), "{msg}");
    }
}
