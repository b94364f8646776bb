//! Who may call management methods. polkit decides where it runs on the daemon's bus; where it
//! does not (a session bus, a minimal system), the `[dbus]` uid and group rules do. The caller's
//! uid and groups come from the bus (`GetConnectionCredentials` on the message's sender), never
//! from anything the caller says.

use inferd_client::Error;
use zbus::fdo::DBusProxy;
use zbus::message::{Flags, Header};
use zbus::names::BusName;
use zbus::Connection;

use std::sync::{Arc, RwLock};

use super::polkit::{self, Action, Verdict};
use crate::config::DbusConfig;

/// Shared by the served object and the frontend, so a reload can change the admins.
#[derive(Debug, Clone)]
pub struct Auth {
    own_uid: u32,
    admins: Arc<RwLock<Admins>>,
}

#[derive(Debug, PartialEq)]
struct Admins {
    uids: Vec<u32>,
    gid: Option<u32>,
    polkit: bool,
}

/// `dbus.admin_group` names no group this system has.
#[derive(Debug, thiserror::Error)]
pub enum AdminGroupError {
    #[error("dbus.admin_group {0:?}: {1}")]
    Lookup(String, #[source] nix::errno::Errno),
    #[error("dbus.admin_group {0:?}: no such group")]
    Missing(String),
}

impl Admins {
    fn from_config(cfg: &DbusConfig) -> Result<Admins, AdminGroupError> {
        let gid = match &cfg.admin_group {
            None => None,
            Some(g) => Some(
                nix::unistd::Group::from_name(g)
                    .map_err(|e| AdminGroupError::Lookup(g.clone(), e))?
                    .ok_or_else(|| AdminGroupError::Missing(g.clone()))?
                    .gid
                    .as_raw(),
            ),
        };
        Ok(Admins {
            uids: cfg.admin_uids.clone(),
            gid,
            polkit: cfg.polkit.unwrap_or(true),
        })
    }
}

impl Auth {
    pub fn new(cfg: &DbusConfig) -> Result<Auth, AdminGroupError> {
        Ok(Auth {
            own_uid: nix::unistd::getuid().as_raw(),
            admins: Arc::new(RwLock::new(Admins::from_config(cfg)?)),
        })
    }

    /// Takes the admins of a reloaded config; on error the old ones stay.
    pub fn update(&self, cfg: &DbusConfig) -> Result<(), AdminGroupError> {
        let new = Admins::from_config(cfg)?;
        *self.admins.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// Says at start when `dbus.admin_uids`/`admin_group` are set but polkit decides instead,
    /// so an upgrade that brings polkit does not silently take access away.
    pub async fn warn_if_polkit_overrides(&self, conn: &Connection) {
        let (ask, rules) = {
            let a = self.admins.read().unwrap_or_else(|p| p.into_inner());
            (a.polkit, !a.uids.is_empty() || a.gid.is_some())
        };
        if ask && rules && polkit::present(conn).await.unwrap_or(false) {
            tracing::warn!(
                "polkit runs on this bus, so it decides who may manage models; dbus.admin_uids and \
                 dbus.admin_group apply only without it (grant them with a polkit rule, or set \
                 dbus.polkit = false: docs/deploy.md)"
            );
        }
    }

    fn allows(&self, uid: u32, groups: &[u32]) -> bool {
        let admins = self.admins.read().unwrap_or_else(|p| p.into_inner());
        uid == 0
            || uid == self.own_uid
            || admins.uids.contains(&uid)
            || admins.gid.is_some_and(|g| groups.contains(&g))
    }

    /// `Ok` when the message's sender may call the management method `method`, which needs
    /// `action`.
    pub async fn check(
        &self,
        conn: &Connection,
        hdr: &Header<'_>,
        method: &str,
        action: Action,
    ) -> Result<(), Error> {
        let denied =
            |why: String| Error::AccessDenied(format!("{method} is for administrators: {why}"));
        let sender = hdr
            .sender()
            .ok_or_else(|| denied("the message has no sender".into()))?;
        let creds = DBusProxy::new(conn)
            .await?
            .get_connection_credentials(BusName::from(sender.to_owned()))
            .await
            .map_err(|e| denied(format!("cannot identify the caller: {e}")))?;
        let uid = creds
            .unix_user_id()
            .ok_or_else(|| denied("the bus did not report the caller's uid".into()))?;
        if uid == 0 || uid == self.own_uid {
            return Ok(());
        }
        let (ask_polkit, by_group) = {
            let a = self.admins.read().unwrap_or_else(|p| p.into_inner());
            (a.polkit, a.gid.is_some())
        };
        if ask_polkit {
            let interactive = hdr.primary().flags().contains(Flags::AllowInteractiveAuth);
            match polkit::check(conn, sender.as_str(), action, interactive, self.own_uid).await {
                Ok(Verdict::Allowed) => return Ok(()),
                Ok(Verdict::Denied { challenge }) => {
                    tracing::warn!(uid, method, action = action.id(), "polkit refused");
                    let how = if challenge {
                        "; an administrator's password would do: allow interactive \
                         authorization (inferctl does; busctl --allow-interactive-authorization=yes) \
                         with a polkit agent running"
                    } else {
                        ""
                    };
                    return Err(denied(format!(
                        "polkit did not authorize {} for uid {uid}{how}",
                        action.id()
                    )));
                }
                Ok(Verdict::Absent) => {}
                Err(e) => {
                    // Fail closed: a polkit that is there but broken must not widen access.
                    return Err(denied(format!("cannot ask polkit: {e}")));
                }
            }
        }
        let groups = creds.unix_group_ids().cloned().unwrap_or_default();
        if by_group && groups.is_empty() {
            tracing::warn!(
                uid,
                "the bus reports no groups for the caller; dbus.admin_group cannot match"
            );
        }
        if self.allows(uid, &groups) {
            Ok(())
        } else {
            tracing::warn!(uid, method, "management call refused");
            Err(denied(format!(
                "uid {uid} is not root, the daemon's uid, in dbus.admin_uids, or in dbus.admin_group"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_is_allowed() {
        let a = Auth {
            own_uid: 1000,
            admins: Arc::new(RwLock::new(Admins {
                uids: vec![1001],
                gid: Some(50),
                polkit: true,
            })),
        };
        assert!(a.allows(0, &[]));
        assert!(a.allows(1000, &[]));
        assert!(a.allows(1001, &[]));
        assert!(a.allows(2000, &[7, 50]));
        assert!(!a.allows(2000, &[7]));
        assert!(!a.allows(65534, &[]));
        a.update(&DbusConfig {
            admin_uids: vec![65534],
            ..Default::default()
        })
        .unwrap();
        assert!(a.allows(65534, &[]));
        assert!(!a.allows(1001, &[]));
    }
}
