//! The D-Bus frontend: serves `org.inferd.Inferd1` on the session, system or a given bus.

mod auth;
mod callers;
mod errors;
mod interface;
mod jobs;
mod models;
mod options;
mod polkit;
mod request;

use std::sync::Arc;

use inferd_client::names::{BUS_NAME, OBJECT_PATH};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use zbus::object_server::SignalEmitter;
use zbus::{connection, Connection};

use crate::config::{Bus, DbusConfig};
use crate::engine::Engine;
use crate::runtime::Runtime;

pub use interface::Service;

#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error(transparent)]
    Config(#[from] auth::AdminGroupError),
}

/// A running D-Bus frontend.
pub struct Frontend {
    conn: Connection,
    auth: auth::Auth,
    /// Ends the tasks that follow the engine for the bus (model objects, ModelStateChanged).
    stop: CancellationToken,
}

/// Serves the objects (the service, its `ObjectManager`, a model object per model), then
/// requests the name, so a client that sees the name finds them all.
pub async fn serve(
    engine: Engine,
    bus: &Bus,
    cfg: &DbusConfig,
    runtime: &Arc<Runtime>,
) -> Result<Frontend, DbusError> {
    let auth = auth::Auth::new(cfg).map_err(DbusError::Config)?;
    let callers = callers::Callers::default();
    let service = Service {
        engine: engine.clone(),
        auth: auth.clone(),
        callers: callers.clone(),
        runtime: runtime.clone(),
        requests: Default::default(),
    };
    let builder = match bus {
        Bus::Session => connection::Builder::session()?,
        Bus::System => connection::Builder::system()?,
        Bus::Address(a) => connection::Builder::address(a.as_str())?,
    };
    let conn = builder
        .serve_at(OBJECT_PATH, service)?
        .serve_at(OBJECT_PATH, zbus::fdo::ObjectManager)?
        .build()
        .await?;
    let stop = CancellationToken::new();
    // Subscribed before the objects are first synced and the name taken: no change is missed.
    let (changes, mut state_changes) = (engine.subscribe(), engine.subscribe());
    let mut published = models::Published::default();
    published.sync(&conn, &engine).await;
    conn.request_name(BUS_NAME).await?;
    tokio::spawn(models::follow(
        conn.clone(),
        engine.clone(),
        published,
        changes,
        stop.clone(),
    ));
    auth.warn_if_polkit_overrides(&conn).await;

    let watcher = conn.clone();
    tokio::spawn(async move {
        if let Err(e) = callers.watch(watcher).await {
            tracing::error!("cannot follow callers on the bus: {e}");
        }
    });
    let emitter = SignalEmitter::new(&conn, OBJECT_PATH)?.into_owned();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                c = state_changes.recv() => c,
                _ = stopped.cancelled() => break,
            };
            match change {
                Ok(c) => {
                    if let Err(e) =
                        Service::model_state_changed(&emitter, &c.name, c.state.as_str()).await
                    {
                        tracing::warn!("cannot emit ModelStateChanged: {e}");
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("{n} model state changes were not signalled")
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    Ok(Frontend { conn, auth, stop })
}

impl Frontend {
    /// Applies a reloaded `[dbus]` section's admins; the bus itself needs a restart.
    pub fn update(&self, cfg: &DbusConfig) -> Result<(), DbusError> {
        self.auth.update(cfg).map_err(DbusError::Config)
    }

    /// Gives up the bus name; in-flight replies already sent are unaffected.
    pub async fn close(self) {
        self.stop.cancel();
        if let Err(e) = self.conn.release_name(BUS_NAME).await {
            tracing::warn!("cannot release {BUS_NAME}: {e}");
        }
        let _ = self.conn.close().await;
    }
}
