//! `inferd check`: validates the config and every manifest and reports the runtime, without
//! serving anything. Useful in CI and in package scripts.

use crate::config::Config;
use crate::repository::Repository;
use crate::runtime;

/// Prints a report; returns the number of problems found.
pub fn check(config: &Config) -> usize {
    let mut problems = 0;
    let mut fail = |what: String| {
        println!("FAIL  {what}");
        problems += 1;
    };
    match config.validate() {
        Ok(()) => println!("ok    config"),
        Err(e) => fail(e.to_string()),
    }
    match runtime::find(config.runtime.library.as_deref()) {
        Ok(rt) => {
            println!(
                "ok    ONNX Runtime {} at {} (found by {})",
                rt.version,
                rt.path.display(),
                rt.source
            );
            println!("      providers: {}", rt.providers.join(", "));
        }
        Err(e) => fail(e.to_string()),
    }
    let dir = config.models_dir();
    match Repository::new(&dir).scan() {
        Err(e) => fail(format!("model repository {}: {e}", dir.display())),
        Ok(entries) => {
            println!(
                "ok    model repository {} ({} models)",
                dir.display(),
                entries.len()
            );
            for entry in entries {
                match entry
                    .spec
                    .and_then(|spec| spec.inspect_model().map(|_| spec))
                {
                    Ok(spec) => println!(
                        "ok    model {} ({}, providers {:?})",
                        entry.name,
                        spec.manifest.kind.as_str(),
                        spec.manifest.execution.providers
                    ),
                    Err(e) => fail(format!("model {}: {e}", entry.name)),
                }
            }
        }
    }
    if let Some(m) = config.mqtt.as_ref().filter(|m| m.enabled) {
        broker_network(m);
    }
    if let Some(Ok(endpoints)) = config.http.as_ref().map(|h| h.endpoints()) {
        let list: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        println!("ok    HTTP API on {}", list.join(", "));
        if endpoints.iter().any(|e| !e.is_loopback()) {
            println!(
                "note  the shipped unit allows loopback only: a drop-in with IPAddressAllow= \
                 for the clients' network is needed for remote HTTP clients"
            );
        }
    }
    problems
}

/// The shipped unit allows loopback only (`IPAddressDeny=any`, `IPAddressAllow=localhost`):
/// says which drop-in line a broker elsewhere needs.
fn broker_network(m: &crate::config::mqtt::MqttConfig) {
    use std::net::ToSocketAddrs;
    let Ok(e) = m.endpoint() else { return };
    match (e.host.as_str(), e.port).to_socket_addrs() {
        Err(err) => println!(
            "note  MQTT broker {}: cannot resolve it here: {err}",
            e.host
        ),
        Ok(addrs) => {
            let mut far: Vec<String> = addrs
                .filter(|a| !a.ip().is_loopback())
                .map(|a| a.ip().to_string())
                .collect();
            far.sort();
            far.dedup();
            if far.is_empty() {
                println!(
                    "ok    MQTT broker {} is on this host (the unit allows loopback)",
                    e.host
                );
            } else {
                println!(
                    "note  MQTT broker {} is at {}: under the shipped unit (IPAddressAllow=localhost) add a drop-in with\n      [Service]\n      IPAddressAllow={}",
                    e.host,
                    far.join(", "),
                    far.join(" ")
                );
            }
        }
    }
}
