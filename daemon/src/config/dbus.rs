//! The `[dbus]` section: which bus the D-Bus frontend connects to, and who may manage models.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbusConfig {
    /// `session`, `system`, or a D-Bus address such as `unix:path=/run/bus`.
    pub bus: Option<String>,
    /// Extra uids allowed to call management methods (root and the daemon's uid always are).
    pub admin_uids: Vec<u32>,
    /// Members of this group may call management methods.
    pub admin_group: Option<String>,
    /// Ask polkit (`org.freedesktop.PolicyKit1` on the daemon's bus) first; default true. The
    /// uid and group rules above decide where polkit is absent or this is false.
    pub polkit: Option<bool>,
}

/// Which bus the D-Bus frontend connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    Session,
    System,
    Address(String),
}

impl Bus {
    pub fn parse(s: &str) -> Result<Bus, ConfigError> {
        match s {
            "session" => Ok(Bus::Session),
            "system" => Ok(Bus::System),
            a if a.contains(':') => Ok(Bus::Address(a.to_owned())),
            other => Err(ConfigError::Invalid(format!(
                "dbus.bus = {other:?}: expected \"session\", \"system\" or a D-Bus address"
            ))),
        }
    }
}
