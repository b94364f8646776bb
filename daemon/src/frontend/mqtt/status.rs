//! The retained `{prefix}/{node}/status` message: online with the models, or offline (also the
//! Last Will, so a crash flips it too).

use serde_json::{json, Value};

use crate::engine::Engine;

/// Online, with the same health `Health()` reports on D-Bus.
pub fn online(engine: &Engine) -> Vec<u8> {
    let h = crate::health::check(engine);
    let models: Vec<Value> = h
        .models
        .into_iter()
        .map(|m| {
            json!({
                "name": m.name,
                "kind": m.kind,
                "state": m.state.as_str(),
                "provider": m.provider,
                "error": m.error,
                "engine_build_s": m.engine_build_s,
                "queue_depth": m.queue_depth,
                "active": m.active,
                "last_error": m.last_error,
                "memory_bytes": m.memory_bytes,
                "memory_pool": m.memory_pool,
                "idle_s": m.idle_s,
            })
        })
        .collect();
    json!({"state": "online", "version": h.version, "health": h.status,
           "uptime_s": h.uptime_s, "rss_bytes": h.rss_bytes, "models": models,
           "memory": h.memory})
    .to_string()
    .into_bytes()
}

pub fn offline() -> Vec<u8> {
    json!({"state": "offline", "version": env!("CARGO_PKG_VERSION")})
        .to_string()
        .into_bytes()
}
