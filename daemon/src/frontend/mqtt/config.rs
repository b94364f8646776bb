//! The `[mqtt]` section. A missing section means MQTT is off.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]`.
    pub url: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Default `inferd-<node>`.
    pub client_id: Option<String>,
    /// This daemon's name in topics; default: the host name.
    pub node: Option<String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// 5 (default) or 3 (3.1.1).
    #[serde(default = "five")]
    pub protocol: u8,
    /// Seconds.
    #[serde(default = "keep_alive")]
    pub keep_alive: u64,
    pub username: Option<String>,
    /// The password is read from this file (never from the config, never logged).
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Larger request payloads are answered `too_large` without being parsed.
    #[serde(default = "max_payload")]
    pub max_payload: usize,
}

fn yes() -> bool {
    true
}
fn default_prefix() -> String {
    "inferd".into()
}
fn five() -> u8 {
    5
}
fn keep_alive() -> u64 {
    30
}
fn max_payload() -> usize {
    1 << 20
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConfig {
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        let bad = |why: &str| ConfigError::Invalid(format!("mqtt.url = {:?}: {why}", self.url));
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = self.url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(bad("expected mqtt://host[:port] or mqtts://host[:port]"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad("the port is not a number"))?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(bad("no host"));
        }
        Ok(Endpoint {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            tls,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.endpoint()?;
        if !matches!(self.protocol, 3 | 5) {
            return Err(ConfigError::Invalid(format!(
                "mqtt.protocol = {}: expected 5 or 3 (3.1.1)",
                self.protocol
            )));
        }
        for (key, v) in [("prefix", &self.prefix), ("node", &self.node_name())] {
            if v.is_empty() || v.contains(['/', '+', '#']) {
                return Err(ConfigError::Invalid(format!(
                    "mqtt.{key} = {v:?}: must be non-empty, without '/', '+' or '#'"
                )));
            }
        }
        if self.password_file.is_some() && self.username.is_none() {
            return Err(ConfigError::Invalid(
                "mqtt.password_file needs mqtt.username".into(),
            ));
        }
        Ok(())
    }

    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into())
        })
    }

    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("inferd-{}", self.node_name()))
    }

    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive.max(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> MqttConfig {
        toml::from_str(&format!("url = {url:?}\nnode = \"n1\"")).unwrap()
    }

    #[test]
    fn urls() {
        assert_eq!(
            cfg("mqtt://broker").endpoint().unwrap(),
            Endpoint {
                host: "broker".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(
            cfg("mqtts://10.0.0.2:9000").endpoint().unwrap(),
            Endpoint {
                host: "10.0.0.2".into(),
                port: 9000,
                tls: true
            }
        );
        for bad in ["tcp://x", "mqtt://", "mqtt://h:port"] {
            assert!(cfg(bad).endpoint().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_checks() {
        let c = cfg("mqtt://b");
        assert_eq!(
            (c.prefix.as_str(), c.protocol, c.enabled),
            ("inferd", 5, true)
        );
        assert_eq!(c.client_id(), "inferd-n1");
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.node = Some("a/b".into());
        assert!(bad.validate().is_err());
        let mut bad = c;
        bad.protocol = 4;
        assert!(bad.validate().is_err());
    }
}
