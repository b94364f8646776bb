//! What a request can fail with inside the engine. Frontends map this once, at their edge.

use inferd_client::ModelState;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("no model named {0:?} in the repository")]
    ModelNotFound(String),
    #[error("model {name:?} is {state}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    ModelNotReady {
        name: String,
        state: ModelState,
        reason: Option<String>,
    },
    #[error("{0}")]
    InvalidInput(String),
    #[error("model {model:?} is overloaded: its queue of {capacity} is full; retry later")]
    Overloaded { model: String, capacity: usize },
    #[error("request to {model:?} waited {waited_ms} ms, past its deadline")]
    Timeout { model: String, waited_ms: u128 },
    #[error("inferd is shutting down and takes no new requests")]
    ShuttingDown,
    #[error("the caller went away")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A short, stable name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ModelNotFound(_) => "model_not_found",
            Error::ModelNotReady { .. } => "model_not_ready",
            Error::InvalidInput(_) => "invalid_input",
            Error::Overloaded { .. } => "overloaded",
            Error::Timeout { .. } => "timeout",
            Error::ShuttingDown => "shutting_down",
            Error::Cancelled => "cancelled",
            Error::Internal(_) => "internal",
        }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Internal(format!("ONNX Runtime: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a model could not be loaded; becomes the `error` of a `failed` model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("ONNX Runtime could not load {path}: {source}")]
    Session {
        path: std::path::PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("require_gpu is set and no GPU provider registered: {0}")]
    NoGpu(String),
    #[error("no execution provider registered: {0}")]
    NoProvider(String),
    #[error("TensorRT engine build failed: {0}")]
    EngineBuild(String),
    #[error("memory budget: {0}")]
    MemoryBudget(String),
    /// The model folder's configuration files (generation_config.json and the like) are
    /// unreadable or lack what the kind needs.
    #[error("{0}")]
    ModelFiles(String),
    /// The graph's inputs and outputs do not fit the manifest's kind.
    #[error("{0}")]
    Graph(String),
    #[error("cannot start a worker thread: {0}")]
    Worker(#[source] std::io::Error),
    #[error("the loader panicked")]
    Panicked,
    #[error("inferd is shutting down")]
    ShuttingDown,
}
