//! `Health()`: one answer to "is the daemon well?", for people and monitors alike.

use std::collections::HashMap;

use serde::Serialize;

use crate::status::{get, put, Dict, ModelState, ModelStatus};

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
    /// Each memory pool in use or under a budget: host RAM and each GPU.
    pub memory: Vec<MemoryPool>,
}

/// What the loaded models take in one pool, against its budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct MemoryPool {
    /// `host` or `gpu:N`.
    pub pool: String,
    /// The ready models' sizes in this pool together.
    pub models_bytes: u64,
    /// How many of those sizes are estimated from the model's files: their load ran alongside
    /// another, so its growth was not its own.
    pub estimated: u32,
    /// `engine.memory_budget` (or `engine.gpu_memory_budget`) for this pool, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<u64>,
}

impl MemoryPool {
    fn to_dict(&self) -> Dict {
        let mut d = HashMap::new();
        put(&mut d, "pool", self.pool.as_str());
        put(&mut d, "models_bytes", self.models_bytes);
        put(&mut d, "estimated", self.estimated);
        if let Some(b) = self.budget_bytes {
            put(&mut d, "budget_bytes", b);
        }
        d
    }

    fn from_dict(d: &Dict) -> MemoryPool {
        MemoryPool {
            pool: get(d, "pool").unwrap_or_default(),
            models_bytes: get(d, "models_bytes").unwrap_or_default(),
            estimated: get(d, "estimated").unwrap_or_default(),
            budget_bytes: get(d, "budget_bytes"),
        }
    }
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

    pub fn to_dict(&self) -> Dict {
        let models: Vec<Dict> = self.models.iter().map(ModelStatus::to_dict).collect();
        let memory: Vec<Dict> = self.memory.iter().map(MemoryPool::to_dict).collect();
        let mut d = HashMap::new();
        put(&mut d, "status", self.status.as_str());
        put(&mut d, "version", self.version.as_str());
        put(&mut d, "uptime_s", self.uptime_s);
        put(&mut d, "rss_bytes", self.rss_bytes);
        put(&mut d, "models", models);
        put(&mut d, "memory", memory);
        d
    }

    pub fn from_dict(d: &Dict) -> Result<Health, String> {
        let rows: Vec<Dict> = get(d, "models").unwrap_or_default();
        let pools: Vec<Dict> = get(d, "memory").unwrap_or_default();
        Ok(Health {
            status: get(d, "status").ok_or("health without a status")?,
            version: get(d, "version").unwrap_or_default(),
            uptime_s: get(d, "uptime_s").unwrap_or_default(),
            rss_bytes: get(d, "rss_bytes").unwrap_or_default(),
            models: rows
                .iter()
                .map(ModelStatus::from_dict)
                .collect::<Result<_, _>>()?,
            memory: pools.iter().map(MemoryPool::from_dict).collect(),
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
            memory: vec![
                MemoryPool {
                    pool: "host".into(),
                    models_bytes: 90 << 20,
                    estimated: 0,
                    budget_bytes: Some(1 << 30),
                },
                MemoryPool {
                    pool: "gpu:0".into(),
                    models_bytes: 0,
                    estimated: 2,
                    budget_bytes: None,
                },
            ],
        };
        assert_eq!(Health::from_dict(&h.to_dict()).unwrap(), h);
        assert_eq!(Health::summarize(&h.models), "degraded");
        assert_eq!(Health::summarize(&h.models[..1]), "ok");
    }
}
