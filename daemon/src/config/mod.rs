//! The daemon's TOML configuration. Unknown keys are errors with their line and column, so a typo
//! never silently falls back to a default.

mod dbus;
mod engine;
pub mod http;
pub mod mqtt;

pub use self::dbus::{Bus, DbusConfig};
pub use self::engine::EngineConfig;
pub use self::http::HttpConfig;
pub use self::mqtt::MqttConfig;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Used when `--config` is not given and this file exists (or `inferd.toml` in systemd's
/// `$CONFIGURATION_DIRECTORY`).
pub const DEFAULT_CONFIG: &str = "/etc/inferd/inferd.toml";
/// Used when neither the file nor `--models` names a repository.
pub const DEFAULT_MODELS_DIR: &str = "/var/lib/inferd/models";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    File(#[from] crate::toml_file::TomlFileError),
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error("invalid config: {0}")]
    Listen(#[from] crate::listen::EndpointError),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub log_level: Option<String>,
    pub runtime: RuntimeConfig,
    pub models: ModelsConfig,
    pub dbus: DbusConfig,
    pub engine: EngineConfig,
    /// Absent: MQTT is off.
    pub mqtt: Option<MqttConfig>,
    /// Absent: the OpenAI-compatible HTTP API is off.
    pub http: Option<HttpConfig>,
    pub systemd: SystemdConfig,
    pub metrics: MetricsConfig,
    /// How big one request may be (every transport).
    pub limits: crate::limits::Limits,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where Prometheus scrapes `/metrics`: `127.0.0.1:9464` (loopback only) or
    /// `unix:/run/inferd/metrics.sock`. Absent: no metrics endpoint.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemdConfig {
    /// Send READY=1 only once the models found at start have loaded (or failed), instead of as
    /// soon as the frontends answer.
    pub ready_after_models: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Exact path of libonnxruntime; searched for when absent.
    pub library: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The model repository.
    pub dir: Option<PathBuf>,
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
        Ok(crate::toml_file::parse(text, path)?)
    }

    /// Reads `path`, or the default file when it exists, or starts from defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let default = env_dir("CONFIGURATION_DIRECTORY")
            .map(|d| d.join("inferd.toml"))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let path = match path {
            Some(p) => p.to_owned(),
            None if default.exists() => default,
            None => return Ok(Config::default()),
        };
        let text = crate::toml_file::read(&path)?;
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

    /// `engine.state_dir`, else systemd's `$STATE_DIRECTORY`, else the XDG state home. TensorRT
    /// engines live here: costly to rebuild, so not in the cache directory.
    pub fn state_dir(&self) -> PathBuf {
        self.engine
            .state_dir
            .clone()
            .or_else(|| env_dir("STATE_DIRECTORY"))
            .or_else(|| env_dir("XDG_STATE_HOME").map(|p| p.join("inferd")))
            .or_else(|| env_dir("HOME").map(|p| p.join(".local/state/inferd")))
            .unwrap_or_else(|| PathBuf::from("/var/lib/inferd"))
    }

    /// systemd's `$CACHE_DIRECTORY`, else the XDG cache home: what can be rebuilt cheaply
    /// (TensorRT timing caches).
    pub fn cache_dir(&self) -> PathBuf {
        env_dir("CACHE_DIRECTORY")
            .or_else(|| env_dir("XDG_CACHE_HOME").map(|p| p.join("inferd")))
            .or_else(|| env_dir("HOME").map(|p| p.join(".cache/inferd")))
            .unwrap_or_else(|| PathBuf::from("/var/cache/inferd"))
    }

    /// Takes what a running daemon can change from a reloaded config (log level, admins, drain
    /// timeout) and keeps the rest; returns the merged config and the keys that changed but
    /// need a restart.
    pub fn reloaded(&self, mut next: Config) -> (Config, Vec<&'static str>) {
        fn keep<T: PartialEq + Clone>(
            kept: &mut Vec<&'static str>,
            key: &'static str,
            old: &T,
            new: &mut T,
        ) {
            if old != new {
                kept.push(key);
                *new = old.clone();
            }
        }
        let mut kept = Vec::new();
        keep(&mut kept, "runtime", &self.runtime, &mut next.runtime);
        keep(&mut kept, "models.dir", &self.models, &mut next.models);
        keep(&mut kept, "dbus.bus", &self.dbus.bus, &mut next.dbus.bus);
        let state_dir = &mut next.engine.state_dir;
        keep(
            &mut kept,
            "engine.state_dir",
            &self.engine.state_dir,
            state_dir,
        );
        let e = &mut next.engine;
        keep(
            &mut kept,
            "engine.background_share",
            &self.engine.background_share,
            &mut e.background_share,
        );
        keep(
            &mut kept,
            "engine.memory_budget",
            &self.engine.memory_budget,
            &mut e.memory_budget,
        );
        keep(
            &mut kept,
            "engine.gpu_memory_budget",
            &self.engine.gpu_memory_budget,
            &mut e.gpu_memory_budget,
        );
        keep(
            &mut kept,
            "engine.keep_alive_s",
            &self.engine.keep_alive_s,
            &mut e.keep_alive_s,
        );
        keep(
            &mut kept,
            "engine.min_wake_interval_ms",
            &self.engine.min_wake_interval_ms,
            &mut e.min_wake_interval_ms,
        );
        keep(&mut kept, "metrics", &self.metrics, &mut next.metrics);
        keep(&mut kept, "mqtt", &self.mqtt, &mut next.mqtt);
        keep(&mut kept, "http", &self.http, &mut next.http);
        keep(&mut kept, "systemd", &self.systemd, &mut next.systemd);
        (next, kept)
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
        if let Some(h) = &self.http {
            h.validate()?;
        }
        if !(0.0..=1.0).contains(&self.engine.background_share) {
            return Err(ConfigError::Invalid(format!(
                "engine.background_share must be between 0 and 1, got {}",
                self.engine.background_share
            )));
        }
        let l = &self.limits;
        for (key, v) in [
            ("max_texts", l.max_texts),
            ("max_text_bytes", l.max_text_bytes),
            ("max_prompt_bytes", l.max_prompt_bytes),
            ("max_stop_bytes", l.max_stop_bytes),
            ("max_tensor_bytes", l.max_tensor_bytes),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{key} must be at least 1"
                )));
            }
        }
        if let Some(listen) = &self.metrics.listen {
            crate::metrics::endpoint(listen)?;
        }
        Ok(())
    }
}

/// A directory named by an environment variable (systemd sets these for the unit's
/// `StateDirectory=` and friends); unset or empty is `None`. systemd may pass several
/// colon-separated paths; the first is ours.
fn env_dir(key: &str) -> Option<PathBuf> {
    let v = std::env::var(key).ok()?;
    v.split(':')
        .next()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
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
    fn reload_takes_live_keys_and_names_the_rest() {
        let old = Config::parse("[dbus]\nbus = \"system\"\n", Path::new("x")).unwrap();
        let new = Config::parse(
            "log_level = \"debug\"\n[dbus]\nbus = \"session\"\nadmin_uids = [5]\n[systemd]\nready_after_models = true\n",
            Path::new("x"),
        )
        .unwrap();
        let (merged, kept) = old.reloaded(new);
        assert_eq!(kept, ["dbus.bus", "systemd"]);
        assert_eq!(merged.log_level.as_deref(), Some("debug"));
        assert_eq!(merged.dbus.admin_uids, [5]);
        assert_eq!(merged.dbus.bus.as_deref(), Some("system"));
        assert!(!merged.systemd.ready_after_models);
        assert!(old.reloaded(old.clone()).1.is_empty());
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
