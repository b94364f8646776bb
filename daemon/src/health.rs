//! The daemon's health, as `Health()` on D-Bus and the MQTT status report it.

use inferd_client::Health;

use crate::engine::Engine;

pub fn check(engine: &Engine) -> Health {
    let models = engine.list();
    Health {
        status: Health::summarize(&models).to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_s: crate::clock::uptime().as_secs(),
        rss_bytes: crate::memory::rss_bytes().unwrap_or(0),
        models,
        memory: engine.memory_pools(),
    }
}
