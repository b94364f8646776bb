//! The retained `{prefix}/{node}/status` message: online with the models, or offline (also the
//! Last Will, so a crash flips it too).

use inferd_client::messages::{NodeStatus, StatusModel};

use inferd_client::Health;

use super::wire::bytes;

/// Online, with the same health `Health()` reports on D-Bus.
pub fn online(h: &Health) -> Vec<u8> {
    let models = h
        .models
        .iter()
        .cloned()
        .map(|m| StatusModel {
            state: m.state.as_str().to_owned(),
            name: m.name,
            kind: m.kind,
            provider: m.provider,
            error: m.error,
            engine_build_s: m.engine_build_s,
            queue_depth: m.queue_depth,
            active: m.active,
            last_error: m.last_error,
            memory_bytes: m.memory_bytes,
            memory_pool: m.memory_pool,
            idle_s: m.idle_s,
        })
        .collect();
    bytes(&NodeStatus {
        state: "online".into(),
        version: h.version.clone(),
        health: Some(h.status.clone()),
        uptime_s: Some(h.uptime_s),
        rss_bytes: Some(h.rss_bytes),
        models: Some(models),
        memory: Some(h.memory.clone()),
    })
}

pub fn offline() -> Vec<u8> {
    bytes(&NodeStatus {
        state: "offline".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        health: None,
        uptime_s: None,
        rss_bytes: None,
        models: None,
        memory: None,
    })
}
