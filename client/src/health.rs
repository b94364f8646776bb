//! `Health()`: one answer to "is the daemon well?", for people and monitors alike.

use std::collections::HashMap;

use serde::Serialize;
use zbus::zvariant::{OwnedValue, Value};

use crate::status::{ModelState, ModelStatus};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Health {
    /// `ok`, `loading` (a model is loading), or `degraded` (a model failed).
    pub status: String,
    pub version: String,
    pub uptime_s: u64,
    /// The daemon's resident memory.
    pub rss_bytes: u64,
    /// Each model: state, provider, queue depth, last error, memory, idle time.
    pub models: Vec<ModelStatus>,
}

impl Health {
    /// The overall status the models add up to.
    pub fn summarize(models: &[ModelStatus]) -> &'static str {
        if models.iter().any(|m| m.state == ModelState::Failed) {
            "degraded"
        } else if models.iter().any(|m| m.state == ModelState::Loading) {
            "loading"
        } else {
            "ok"
        }
    }

    pub fn to_dict(&self) -> HashMap<String, OwnedValue> {
        let models: Vec<HashMap<String, OwnedValue>> =
            self.models.iter().map(ModelStatus::to_dict).collect();
        let mut d = HashMap::new();
        let mut put = |k: &str, v: Value<'_>| {
            if let Ok(v) = v.try_to_owned() {
                d.insert(k.to_owned(), v);
            }
        };
        put("status", Value::from(self.status.as_str()));
        put("version", Value::from(self.version.as_str()));
        put("uptime_s", Value::from(self.uptime_s));
        put("rss_bytes", Value::from(self.rss_bytes));
        put("models", Value::from(models));
        d
    }

    pub fn from_dict(d: &HashMap<String, OwnedValue>) -> Result<Health, String> {
        fn get<T: TryFrom<OwnedValue>>(d: &HashMap<String, OwnedValue>, k: &str) -> Option<T> {
            d.get(k)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| T::try_from(v).ok())
        }
        let rows: Vec<HashMap<String, OwnedValue>> = get(d, "models").unwrap_or_default();
        Ok(Health {
            status: get(d, "status").ok_or("health without a status")?,
            version: get(d, "version").unwrap_or_default(),
            uptime_s: get(d, "uptime_s").unwrap_or_default(),
            rss_bytes: get(d, "rss_bytes").unwrap_or_default(),
            models: rows
                .iter()
                .map(ModelStatus::from_dict)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_summary() {
        let m = |name: &str, state| ModelStatus {
            name: name.into(),
            state,
            queue_depth: 2,
            last_error: Some("timeout: … (request d1-3)".into()),
            ..Default::default()
        };
        let h = Health {
            status: "degraded".into(),
            version: "0.1.0".into(),
            uptime_s: 61,
            rss_bytes: 1 << 30,
            models: vec![m("a", ModelState::Ready), m("b", ModelState::Failed)],
        };
        assert_eq!(Health::from_dict(&h.to_dict()).unwrap(), h);
        assert_eq!(Health::summarize(&h.models), "degraded");
        assert_eq!(Health::summarize(&h.models[..1]), "ok");
    }
}
