//! Tracks callers' connections so that work for a caller who has left the bus is dropped.
//!
//! Each in-flight call waits on its caller's token; when the bus reports that the caller's unique
//! name has gone (NameOwnerChanged with no new owner), the token fires, the call's future is
//! dropped, and the queue skips the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use zbus::fdo::DBusProxy;
use zbus::Connection;

#[derive(Clone, Default)]
pub struct Callers {
    tokens: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

impl Callers {
    /// The token that fires when `unique_name` leaves the bus.
    pub fn token(&self, unique_name: &str) -> CancellationToken {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(unique_name.to_owned()).or_default().clone()
    }

    fn gone(&self, unique_name: &str) {
        let token = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(unique_name);
        if let Some(t) = token {
            tracing::debug!(caller = unique_name, "caller left; dropping its requests");
            t.cancel();
        }
    }

    /// Follows NameOwnerChanged until the connection closes.
    pub async fn watch(self, conn: Connection) -> zbus::Result<()> {
        let dbus = DBusProxy::new(&conn).await?;
        let mut changes = dbus.receive_name_owner_changed().await?;
        while let Some(signal) = changes.next().await {
            let Ok(args) = signal.args() else { continue };
            if args.name().starts_with(':') && args.new_owner().is_none() {
                self.gone(args.name());
            }
        }
        Ok(())
    }
}
