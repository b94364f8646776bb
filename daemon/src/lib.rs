//! inferd: an on-device inference daemon serving ONNX models over D-Bus and MQTT.
//!
//! `run` is the whole daemon; `main.rs` only parses flags and waits for a signal. Tests start the
//! real binary, and embedders can call `run` with their own shutdown future.

pub mod check;
pub mod config;
pub mod engine;
pub mod error;
pub mod frontend;
pub mod kinds;
pub mod manifest;
pub mod repository;
pub mod runtime;
pub mod tensor;

use std::future::Future;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::engine::Engine;
use crate::frontend::dbus::{self, DbusError};
use crate::frontend::mqtt;
use crate::repository::Repository;
use crate::runtime::RuntimeError;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("model repository {path}: {source}")]
    Repository {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dbus(#[from] DbusError),
}

/// Runs the daemon until `shutdown` resolves, then drains accepted requests and exits.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    config.validate()?;
    let bus = config.bus()?;
    let runtime = runtime::load(config.runtime.library.as_deref())?;
    tracing::info!(
        path = %runtime.path.display(),
        version = %runtime.version,
        providers = %runtime.providers.join(","),
        "loaded ONNX Runtime"
    );
    let models = config.models_dir();
    let ctx = kinds::LoadContext {
        env: runtime.env.clone(),
        state_dir: config.state_dir(),
    };
    let engine =
        Engine::start(Repository::new(&models), ctx).map_err(|source| StartError::Repository {
            path: models.clone(),
            source,
        })?;
    let frontend = dbus::serve(engine.clone(), &bus, &config.dbus, &runtime).await?;
    tracing::info!(models = %models.display(), bus = ?bus, "serving org.inferd.Inferd1");
    let mqtt = match config.mqtt.as_ref().filter(|m| m.enabled) {
        Some(m) => Some(mqtt::serve(engine.clone(), m)?),
        None => None,
    };

    shutdown.await;
    tracing::info!("shutting down: finishing accepted requests");
    if let Some(m) = &mqtt {
        m.leave_pool().await;
    }
    let timeout = Duration::from_millis(config.engine.shutdown_timeout_ms);
    if !engine.shutdown(timeout).await {
        tracing::warn!("some requests were still running after {timeout:?}; exiting anyway");
    }
    if let Some(m) = mqtt {
        m.close().await;
    }
    frontend.close().await;
    tracing::info!("stopped");
    Ok(())
}
