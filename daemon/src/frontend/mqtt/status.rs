//! The retained `{prefix}/{node}/status` message: online with the models, or offline (also the
//! Last Will, so a crash flips it too).

use serde_json::{json, Value};

use crate::engine::Engine;

pub fn online(engine: &Engine) -> Vec<u8> {
    let models: Vec<Value> = engine
        .list()
        .into_iter()
        .map(|m| {
            json!({
                "name": m.name,
                "kind": m.kind,
                "state": m.state.as_str(),
                "provider": m.provider,
                "error": m.error,
                "engine_build_s": m.engine_build_s,
            })
        })
        .collect();
    json!({"state": "online", "version": env!("CARGO_PKG_VERSION"), "models": models})
        .to_string()
        .into_bytes()
}

pub fn offline() -> Vec<u8> {
    json!({"state": "offline", "version": env!("CARGO_PKG_VERSION")})
        .to_string()
        .into_bytes()
}
