//! The `[http]` section: the OpenAI-compatible HTTP frontend. Absent: no HTTP.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use crate::listen::{Endpoint, Remote};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `unix:/PATH` or `HOST:PORT`, one or more. Empty: `http.sock` in the runtime directory
    /// (`/run/inferd/http.sock` under systemd).
    pub listen: Vec<String>,
    /// Listen on addresses other machines can reach. Needs `token_file`.
    pub allow_remote: bool,
    /// A file holding the bearer token TCP clients must send (`Authorization: Bearer ...`).
    /// Unix-socket clients are let in by the socket's permissions instead.
    pub token_file: Option<PathBuf>,
    /// Permissions of the unix sockets, in octal: who may connect.
    pub socket_mode: String,
    /// The largest request body taken.
    pub max_body_bytes: usize,
    /// Requests served at once; more wait for a turn.
    pub max_concurrent: usize,
    /// A request without an answer (or, when streaming, without its first byte) by then gets
    /// a 504. Generations have their own `timeout_ms` too.
    pub request_timeout_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Vec::new(),
            allow_remote: false,
            token_file: None,
            socket_mode: "0660".into(),
            max_body_bytes: 8 << 20,
            max_concurrent: 64,
            request_timeout_s: 600,
        }
    }
}

const KEY: &str = "http.listen";
const LOCAL_ONLY: &str =
    "set http.allow_remote = true (and http.token_file) to listen beyond this machine";

impl HttpConfig {
    /// Where to listen, parsed; the default socket when none is given.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, ConfigError> {
        let remote = if self.allow_remote {
            Remote::Allowed
        } else {
            Remote::Refused(LOCAL_ONLY)
        };
        if self.listen.is_empty() {
            return Ok(vec![Endpoint::Unix(default_socket())]);
        }
        self.listen
            .iter()
            .map(|l| Ok(Endpoint::parse(KEY, l, remote)?))
            .collect()
    }

    pub fn mode(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(&self.socket_mode, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "http.socket_mode = {:?}: expected octal permissions such as \"0660\"",
                    self.socket_mode
                ))
            })
    }

    /// The bearer token, read from `token_file` (trailing newline dropped). Never logged.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!("http.token_file {}: {e}", path.display()))
        })?;
        let token = text.trim_end_matches(['\n', '\r']);
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid(format!(
                "http.token_file {}: expected one token with no spaces",
                path.display()
            )));
        }
        Ok(Some(token.to_owned()))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let endpoints = self.endpoints()?;
        self.mode()?;
        let token = self.token()?;
        if endpoints.iter().any(|e| !e.is_loopback()) && token.is_none() {
            return Err(ConfigError::Invalid(
                "http.allow_remote needs http.token_file: a non-loopback address without a \
                 token would serve anyone on the network"
                    .into(),
            ));
        }
        for (key, v) in [
            ("max_body_bytes", self.max_body_bytes),
            ("max_concurrent", self.max_concurrent),
            ("request_timeout_s", self.request_timeout_s as usize),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!(
                    "http.{key} must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

/// `$RUNTIME_DIRECTORY/http.sock` under systemd, else `$XDG_RUNTIME_DIR/inferd/http.sock`,
/// else `/run/inferd/http.sock`.
fn default_socket() -> PathBuf {
    super::env_dir("RUNTIME_DIRECTORY")
        .or_else(|| super::env_dir("XDG_RUNTIME_DIR").map(|p| p.join("inferd")))
        .unwrap_or_else(|| PathBuf::from("/run/inferd"))
        .join("http.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> HttpConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn remote_needs_allow_remote_and_a_token() {
        assert!(cfg("listen = [\"127.0.0.1:8080\", \"unix:/tmp/h.sock\"]")
            .validate()
            .is_ok());
        let e = cfg("listen = [\"0.0.0.0:8080\"]").validate().unwrap_err();
        assert!(e.to_string().contains("http.allow_remote"), "{e}");
        let e = cfg("listen = [\"0.0.0.0:8080\"]\nallow_remote = true")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("needs http.token_file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let c = cfg(&format!(
            "listen = [\"0.0.0.0:8080\"]\nallow_remote = true\ntoken_file = {:?}",
            token
        ));
        c.validate().unwrap();
        assert_eq!(c.token().unwrap().as_deref(), Some("s3cret"));
        std::fs::write(&token, "\n").unwrap();
        assert!(c.validate().is_err(), "an empty token");
    }

    #[test]
    fn defaults_and_modes() {
        let c = cfg("");
        assert!(
            matches!(c.endpoints().unwrap()[..], [Endpoint::Unix(ref p)] if p.ends_with("http.sock"))
        );
        assert_eq!(c.mode().unwrap(), 0o660);
        assert!(cfg("socket_mode = \"9\"").validate().is_err());
        assert!(cfg("max_concurrent = 0").validate().is_err());
    }
}
