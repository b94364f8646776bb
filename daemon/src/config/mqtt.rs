//! The `[mqtt]` section. A missing section means MQTT is off.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// The largest packet the broker takes, where it cannot say so itself (MQTT 3.1.1, or a
    /// broker that announces no Maximum Packet Size): larger answers become `too_large`.
    pub max_packet: Option<usize>,
    /// Longer reply topics are refused (bytes).
    #[serde(default = "max_reply_topic")]
    pub max_reply_topic: usize,
    /// When set, replies go only to topics under this one.
    pub reply_prefix: Option<String>,
    /// Requests running at once; past it they are answered `overloaded`.
    #[serde(default = "max_in_flight")]
    pub max_in_flight: usize,
    /// How long an answered request is remembered, so a duplicate is answered, not run again.
    #[serde(default = "dedupe_window_s")]
    pub dedupe_window_s: u64,
    /// The remembered answers take at most this many bytes; the oldest go first.
    #[serde(default = "dedupe_bytes")]
    pub dedupe_bytes: usize,
    /// `[[mqtt.grant]]`: the priorities requests on a topic filter may claim (default:
    /// `background` only).
    #[serde(default)]
    pub grant: Vec<GrantConfig>,
    /// `[[mqtt.route]]`: run a model on every message of a topic filter.
    #[serde(default)]
    pub route: Vec<RouteConfig>,
    /// Publish Home Assistant MQTT discovery configs and a plain availability topic.
    #[serde(default)]
    pub homeassistant: bool,
}

/// A route: messages on `from` run `op` on `model`; results go to `to`, where `{1}`, `{2}`, …
/// are the topic levels matched by the filter's `+` wildcards.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub from: String,
    pub model: String,
    /// `embed`, `classify`, `generate`, `chat` (the text as one user message) or `infer`.
    pub op: String,
    pub to: String,
    /// Text ops: the payload is JSON and the text is this string field (default: the raw
    /// UTF-8 payload).
    pub input_field: Option<String>,
    /// `infer`: the model input's name and the shape the payload's values fill; the payload is
    /// a JSON number array or raw little-endian f32.
    pub input_name: Option<String>,
    pub shape: Option<Vec<u64>>,
    /// Options as on a request (`top_k`, `max_tokens`, …).
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Messages waiting for this route; beyond it they go to route-errors.
    #[serde(default = "route_queue")]
    pub queue: usize,
}

/// Priorities requests on some request topics may claim.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// A topic filter over request topics, e.g. `inferd/kitchen/req/smollm2/+`.
    pub topics: String,
    /// `interactive`, `background`.
    pub priorities: Vec<String>,
}

impl GrantConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: String| {
            ConfigError::Invalid(format!("mqtt.grant topics {:?}: {why}", self.topics))
        };
        if self.topics.is_empty() {
            return Err(bad("must be a topic filter".into()));
        }
        if self.priorities.is_empty() {
            return Err(bad("priorities is empty".into()));
        }
        for p in &self.priorities {
            if crate::work::job::Priority::parse(p).is_none() {
                return Err(bad(format!(
                    "priority {p:?}: expected \"interactive\" or \"background\""
                )));
            }
        }
        Ok(())
    }
}

fn route_queue() -> usize {
    64
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
fn max_reply_topic() -> usize {
    256
}
fn max_in_flight() -> usize {
    256
}
fn dedupe_window_s() -> u64 {
    600
}
fn dedupe_bytes() -> usize {
    16 << 20
}

pub use inferd_client::mqtt::Endpoint;

impl MqttConfig {
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        Endpoint::parse(&self.url)
            .map_err(|why| ConfigError::Invalid(format!("mqtt.url = {:?}: {why}", self.url)))
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
        for r in &self.route {
            r.validate()?;
        }
        for g in &self.grant {
            g.validate()?;
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "mqtt.max_in_flight must be at least 1".into(),
            ));
        }
        if let Some(p) = &self.reply_prefix {
            if p.is_empty() || p.starts_with('$') || p.contains(['+', '#']) {
                return Err(ConfigError::Invalid(format!(
                    "mqtt.reply_prefix = {p:?}: must be a topic name, not starting with '$'"
                )));
            }
            let mine = format!("{}/", self.prefix);
            if p == &self.prefix || p.starts_with(&mine) {
                return Err(ConfigError::Invalid(format!(
                    "mqtt.reply_prefix = {p:?} is under mqtt.prefix {:?}, where inferd never replies",
                    self.prefix
                )));
            }
        }
        if self.password_file.is_some() && self.username.is_none() {
            return Err(ConfigError::Invalid(
                "mqtt.password_file needs mqtt.username".into(),
            ));
        }
        // Found now, not at the first connection attempt.
        let files = [
            ("password_file", &self.password_file),
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ];
        for (key, path) in files {
            if let Some(p) = path {
                std::fs::File::open(p).map_err(|e| {
                    ConfigError::Invalid(format!("mqtt.{key} {}: {e}", p.display()))
                })?;
            }
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

impl RouteConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |why: String| ConfigError::Invalid(format!("mqtt.route from {:?}: {why}", self.from));
        if !matches!(
            self.op.as_str(),
            "embed" | "classify" | "generate" | "chat" | "infer"
        ) {
            return Err(bad(format!(
                "op {:?}: expected embed, classify, generate, chat or infer",
                self.op
            )));
        }
        if self.from.is_empty() || self.to.is_empty() || self.to.contains(['+', '#']) {
            return Err(bad(
                "`from` must be a topic filter and `to` a topic name".into()
            ));
        }
        let wildcards = self.from.split('/').filter(|l| *l == "+").count();
        for n in 1..=9 {
            if self.to.contains(&format!("{{{n}}}")) && n > wildcards {
                return Err(bad(format!(
                    "`to` uses {{{n}}} but `from` has {wildcards} '+'"
                )));
            }
        }
        if self.op == "infer" && (self.input_name.is_none() || self.shape.is_none()) {
            return Err(bad("op infer needs input_name and shape".into()));
        }
        Ok(())
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
