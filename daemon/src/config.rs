//! The daemon's TOML configuration. Unknown keys are errors with their line and column, so a typo
//! never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Used when `--config` is not given and this file exists.
pub const DEFAULT_CONFIG: &str = "/etc/inferd/inferd.toml";
/// Used when neither the file nor `--models` names a repository.
pub const DEFAULT_MODELS_DIR: &str = "/var/lib/inferd/models";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub log_level: Option<String>,
    pub runtime: RuntimeConfig,
    pub models: ModelsConfig,
    pub dbus: DbusConfig,
    pub engine: EngineConfig,
    /// Absent: MQTT is off.
    pub mqtt: Option<crate::frontend::mqtt::config::MqttConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Exact path of libonnxruntime; searched for when absent.
    pub library: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The model repository.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbusConfig {
    /// `session`, `system`, or a D-Bus address such as `unix:path=/run/bus`.
    pub bus: Option<String>,
    /// Extra uids allowed to call management methods (root and the daemon's uid always are).
    pub admin_uids: Vec<u32>,
    /// Members of this group may call management methods.
    pub admin_group: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Where TensorRT engine and timing caches live.
    pub state_dir: Option<PathBuf>,
    /// How long shutdown waits for accepted requests before giving up on them.
    pub shutdown_timeout_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            state_dir: None,
            shutdown_timeout_ms: 10_000,
        }
    }
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

/// Command-line values that take precedence over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub models: Option<PathBuf>,
    pub bus: Option<String>,
    pub log_level: Option<String>,
}

impl Config {
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads `path`, or the default file when it exists, or starts from defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => p.to_owned(),
            None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::parse(&text, &path)
    }

    pub fn apply(&mut self, o: Overrides) {
        if o.models.is_some() {
            self.models.dir = o.models;
        }
        if o.bus.is_some() {
            self.dbus.bus = o.bus;
        }
        if o.log_level.is_some() {
            self.log_level = o.log_level;
        }
    }

    pub fn models_dir(&self) -> PathBuf {
        self.models
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MODELS_DIR))
    }

    /// `engine.state_dir`, else systemd's `$STATE_DIRECTORY`, else the XDG state home.
    pub fn state_dir(&self) -> PathBuf {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        self.engine
            .state_dir
            .clone()
            .or_else(|| env("STATE_DIRECTORY"))
            .or_else(|| env("XDG_STATE_HOME").map(|p| p.join("inferd")))
            .or_else(|| env("HOME").map(|p| p.join(".local/state/inferd")))
            .unwrap_or_else(|| PathBuf::from("/var/lib/inferd"))
    }

    pub fn bus(&self) -> Result<Bus, ConfigError> {
        Bus::parse(self.dbus.bus.as_deref().unwrap_or("session"))
    }

    /// Checks what serde cannot: values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bus()?;
        if let Some(m) = self.mqtt.as_ref().filter(|m| m.enabled) {
            m.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = Config::parse(
            "[dbus]\nbus = \"system\"\nadmin_uid = [1]\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("column 1"), "{err}");
        assert!(err.contains("admin_uid"), "{err}");
    }

    #[test]
    fn overrides_win() {
        let mut c = Config::parse("[models]\ndir = \"/a\"\n", Path::new("x")).unwrap();
        c.apply(Overrides {
            models: Some("/b".into()),
            ..Default::default()
        });
        assert_eq!(c.models_dir(), PathBuf::from("/b"));
    }

    #[test]
    fn bus_choices() {
        assert_eq!(Bus::parse("system").unwrap(), Bus::System);
        assert!(matches!(
            Bus::parse("unix:path=/x").unwrap(),
            Bus::Address(_)
        ));
        assert!(Bus::parse("sesion").is_err());
    }
}
