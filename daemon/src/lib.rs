//! inferd: an on-device inference daemon serving ONNX models over D-Bus and MQTT.
//!
//! `run` is the whole daemon; `main.rs` only parses flags, sets up logging and turns signals into
//! [`service::Control`] messages. Tests start the real binary.

pub mod chat;
pub mod check;
pub mod clock;
pub mod config;
pub mod constraint;
pub mod engine;
pub mod error;
pub mod frontend;
pub mod gpu;
pub mod health;
pub mod huge_pages;
pub mod kinds;
pub mod limits;
pub mod listen;
pub mod logging;
pub mod manifest;
pub mod memory;
pub mod metrics;
pub mod onnx_files;
pub mod pool;
pub mod repository;
pub mod runtime;
pub mod sampling;
pub mod service;
pub mod tensor;
pub mod toml_file;
pub mod work;

/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzz {
    pub use crate::frontend::mqtt::fuzz::handler_path as mqtt_handler;
    pub use crate::frontend::mqtt::fuzz_parse as mqtt_request;
    pub use crate::kinds::fuzz_text::{Detokenizer, ReasoningSplitter, StopMatcher};
    pub use crate::work::job::Reasoning;
}

use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{Bus, Config, ConfigError};
use crate::engine::Engine;
use crate::frontend::dbus::{self, DbusError};
use crate::frontend::http::{self, HttpError};
use crate::frontend::mqtt;
use crate::repository::Repository;
use crate::runtime::RuntimeError;
use crate::service::{Control, Notes, Notifier, StatusLine};

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
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("metrics endpoint {endpoint}: {source}")]
    Metrics {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until `Control::Stop` (or the sender goes away), then drains accepted
/// requests and returns. `Control::Reload` calls `reload_config` for a fresh config.
pub async fn run(
    config: Config,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut reload_config: impl FnMut() -> Result<Config, ConfigError>,
) -> Result<(), StartError> {
    config.validate()?;
    let bus = config.bus()?;
    let runtime = std::sync::Arc::new(runtime::find(config.runtime.library.as_deref())?);
    tracing::info!(
        path = %runtime.path.display(),
        found_by = runtime.source,
        version = %runtime.version,
        providers = %runtime.providers.join(","),
        "found ONNX Runtime; it loads with the first model"
    );
    let models = config.models_dir();
    let ctx = engine::LoadContext::new(runtime.clone(), &config);
    let engine =
        Engine::start(Repository::new(&models), ctx).map_err(|source| StartError::Repository {
            path: models.clone(),
            source,
        })?;
    engine.set_limits(config.limits.clone());
    if let Some(listen) = &config.metrics.listen {
        let endpoint = metrics::endpoint(listen).map_err(ConfigError::from)?;
        metrics::serve(&endpoint, engine.clone())
            .await
            .map_err(|source| StartError::Metrics {
                endpoint: listen.clone(),
                source,
            })?;
    }
    let dbus = dbus::serve(engine.clone(), &bus, &config.dbus, &runtime).await?;
    tracing::info!(models = %models.display(), bus = ?bus, "serving org.inferd.Inferd1");
    let mqtt = match config.mqtt.as_ref().filter(|m| m.enabled) {
        Some(m) => Some(mqtt::serve(engine.clone(), m)?),
        None => None,
    };
    let http = match &config.http {
        Some(h) => Some(http::serve(engine.clone(), h).await?),
        None => None,
    };

    let notifier = Notifier::from_env();
    let notes = Notes::default();
    let status = StatusLine {
        engine: engine.clone(),
        bus: match &bus {
            Bus::Session => "session".into(),
            Bus::System => "system".into(),
            Bus::Address(a) => a.clone(),
        },
        mqtt: mqtt.as_ref().map(mqtt::Frontend::online),
        notes: notes.clone(),
    };
    // What arrives before READY waits for it: systemd expects RELOADING=1 from a ready service.
    let mut next: Option<Control> = None;
    if config.systemd.ready_after_models {
        notifier.status("loading models");
        let settled = engine.settled();
        tokio::pin!(settled);
        while next != Some(Control::Stop) {
            tokio::select! {
                _ = &mut settled => break,
                c = control.recv() => next = Some(c.unwrap_or(Control::Stop)),
            }
        }
    }
    notifier.ready(&status.render());
    let status_task = status.clone().spawn(notifier);
    let watchdog = service::spawn_watchdog(engine.clone(), notifier, notes.clone());

    let mut config = config;
    loop {
        let c = match next.take() {
            Some(c) => Some(c),
            None => control.recv().await,
        };
        match c {
            Some(Control::Reload) => {
                notifier.reloading();
                config = reload(config, &mut reload_config, &engine, &dbus, &notes).await;
                notifier.ready(&status.render());
            }
            Some(Control::Stop) | None => break,
        }
    }

    notifier.stopping();
    status_task.abort();
    tracing::info!("shutting down: finishing accepted requests");
    if let Some(m) = &mqtt {
        m.leave_pool().await;
    }
    let timeout = Duration::from_millis(config.engine.shutdown_timeout_ms);
    if !engine.shutdown(timeout).await {
        tracing::warn!("some requests were still running after {timeout:?}; exiting anyway");
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(m) = mqtt {
        m.close().await;
    }
    if let Some(h) = http {
        // Streams still open got their last event when the engine drained.
        h.close(Duration::from_secs(2)).await;
    }
    dbus.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: re-reads the config and rescans the model repository. A config that does not load
/// keeps the old one whole, and says so in the service status; models are rescanned either way.
async fn reload(
    current: Config,
    reload_config: &mut impl FnMut() -> Result<Config, ConfigError>,
    engine: &Engine,
    dbus: &dbus::Frontend,
    notes: &Notes,
) -> Config {
    tracing::info!("reloading the config and the model repository");
    let next = reload_config().and_then(|c| c.validate().map(|()| c));
    let config = match next {
        Err(e) => {
            tracing::error!("reload: {e}; keeping the previous config");
            notes.set_reload_error(Some(e.to_string()));
            current
        }
        Ok(next) => {
            let (merged, kept) = current.reloaded(next);
            if !kept.is_empty() {
                tracing::warn!(
                    "reload: {} changed; restart inferd for that to take effect",
                    kept.join(", ")
                );
            }
            match dbus.update(&merged.dbus) {
                Ok(()) => {
                    notes.set_reload_error(None);
                    merged
                }
                Err(e) => {
                    tracing::error!("reload: {e}; keeping the previous config");
                    notes.set_reload_error(Some(e.to_string()));
                    current
                }
            }
        }
    };
    engine.set_limits(config.limits.clone());
    if let Err(e) = engine.reload().await {
        tracing::error!("reload: {e}");
    }
    config
}
