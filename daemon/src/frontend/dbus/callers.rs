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
    /// Each connection's uid, asked of the bus once.
    uids: Arc<Mutex<HashMap<String, u32>>>,
}

impl Callers {
    /// The token that fires when `unique_name` leaves the bus.
    pub fn token(&self, unique_name: &str) -> CancellationToken {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(unique_name.to_owned()).or_default().clone()
    }

    /// Who `unique_name` is, for the prompt cache: `uid:N` as the bus reports it (never
    /// what the caller says), or empty when the bus cannot tell.
    pub async fn identity(&self, conn: &Connection, unique_name: &str) -> String {
        let known = self
            .uids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(unique_name)
            .copied();
        let uid = match known {
            Some(uid) => Some(uid),
            None => {
                let asked = async {
                    let name = zbus::names::BusName::try_from(unique_name.to_owned()).ok()?;
                    DBusProxy::new(conn)
                        .await
                        .ok()?
                        .get_connection_unix_user(name)
                        .await
                        .ok()
                };
                let uid = asked.await;
                if let Some(uid) = uid {
                    self.uids
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(unique_name.to_owned(), uid);
                }
                uid
            }
        };
        uid.map(|u| format!("uid:{u}")).unwrap_or_default()
    }

    fn gone(&self, unique_name: &str) {
        self.uids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(unique_name);
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
