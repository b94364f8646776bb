//! Home Assistant MQTT discovery (`mqtt.homeassistant = true`): retained configs that make a
//! Home Assistant on the same broker show this daemon as a device, with a binary sensor
//! "running" and a sensor per model holding its state, all read from the retained status.
//!
//! Home Assistant expects plain `online`/`offline` availability, so `{prefix}/{node}/availability`
//! carries that beside the JSON status. The Last Will can only be one message, the JSON status:
//! so each entity is available only while both say online (`availability_mode: all`), and a
//! crashed daemon goes unavailable through its Will. Configs go out on every connection, when
//! the set of models changes (a removed model's config is cleared with an empty retained
//! message, which removes the entity), and when Home Assistant announces itself
//! (`homeassistant/status` → `online`, its birth message) after a restart that lost them.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::link::{Message, Out};
use super::topics::Topics;

/// Home Assistant's discovery prefix (its default; the same in every install we target).
pub const DISCOVERY_PREFIX: &str = "homeassistant";

pub struct Discovery {
    topics: Topics,
    /// Models whose sensor config is out, so one removed since can be cleared.
    published: BTreeSet<String>,
}

impl Discovery {
    pub fn new(topics: Topics) -> Discovery {
        Discovery {
            topics,
            published: BTreeSet::new(),
        }
    }

    /// Home Assistant's birth and will topic, which inferd subscribes to.
    pub fn birth_topic() -> String {
        format!("{DISCOVERY_PREFIX}/status")
    }

    /// Whether `m` is Home Assistant announcing it (re)started.
    pub fn is_birth(m: &Message) -> bool {
        m.topic == Self::birth_topic() && m.payload.as_ref() == b"online"
    }

    /// `online` or `offline`, retained, on the plain availability topic.
    pub fn availability(topics: &Topics, online: bool) -> Out {
        let payload = if online { "online" } else { "offline" };
        Out::retained(&topics.availability(), payload.as_bytes().to_vec())
    }

    /// What Home Assistant needs to hear: nothing while `models` are the ones announced last,
    /// unless `again` (a new connection, or Home Assistant restarted); else the availability and
    /// every config, with an empty one for each model gone since, all retained.
    pub fn announce<'a>(
        &mut self,
        models: impl IntoIterator<Item = &'a str>,
        again: bool,
    ) -> Vec<Out> {
        let now: BTreeSet<String> = models.into_iter().map(str::to_owned).collect();
        if !again && now == self.published {
            return Vec::new();
        }
        let mut out = vec![Self::availability(&self.topics, true)];
        out.extend(self.configs(now));
        out
    }

    fn configs(&mut self, now: BTreeSet<String>) -> Vec<Out> {
        let mut out = vec![Out::retained(
            &self.config_topic("binary_sensor", "running"),
            self.running().to_string().into_bytes(),
        )];
        for gone in self.published.difference(&now) {
            out.push(Out::retained(
                &self.config_topic("sensor", gone),
                Vec::new(),
            ));
        }
        for model in &now {
            let config = self.model_state(model).to_string().into_bytes();
            out.push(Out::retained(&self.config_topic("sensor", model), config));
        }
        self.published = now;
        out
    }

    /// `homeassistant/<component>/inferd_<node>/<object>/config`, with Home Assistant's ids.
    fn config_topic(&self, component: &str, object: &str) -> String {
        format!(
            "{DISCOVERY_PREFIX}/{component}/{}/{}/config",
            self.device_id(),
            ha_id(object)
        )
    }

    fn device_id(&self) -> String {
        ha_id(&format!("inferd_{}", self.topics.node))
    }

    fn device(&self) -> Value {
        json!({
            "identifiers": [self.device_id()],
            "name": format!("inferd {}", self.topics.node),
            "manufacturer": "inferd",
            "model": "inferd inference daemon",
            "sw_version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// On while the status says online; the Will's `offline` turns it off.
    fn running(&self) -> Value {
        json!({
            "name": "Running",
            "unique_id": format!("{}_running", self.device_id()),
            "state_topic": self.topics.status(),
            "value_template": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "running",
            "device": self.device(),
        })
    }

    /// The model's `state` from the status's `models` list.
    fn model_state(&self, model: &str) -> Value {
        json!({
            "name": format!("{model} state"),
            "unique_id": format!("{}_{}_state", self.device_id(), ha_id(model)),
            "state_topic": self.topics.status(),
            "value_template": format!(
                "{{% set m = value_json.models | default([]) | selectattr('name', 'equalto', '{model}') | list %}}{{{{ m[0].state if m else 'unknown' }}}}"
            ),
            "availability": [
                {"topic": self.topics.availability()},
                {"topic": self.topics.status(), "value_template": "{{ value_json.state }}"},
            ],
            "availability_mode": "all",
            "icon": "mdi:brain",
            "device": self.device(),
        })
    }
}

/// Home Assistant takes only `[a-zA-Z0-9_-]` in discovery ids (a model named `smollm2-1.7b`, a
/// dotted host name): anything else becomes `_`.
fn ha_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery() -> Discovery {
        Discovery::new(Topics {
            prefix: "inferd".into(),
            node: "kitchen".into(),
        })
    }

    fn topics(out: &[Out]) -> Vec<(String, bool)> {
        out.iter()
            .map(|o| (o.topic.clone(), o.payload.is_empty()))
            .collect()
    }

    #[test]
    fn a_removed_model_has_its_config_cleared_once() {
        let mut d = discovery();
        let first = d.announce(["minilm", "smollm2"], true);
        assert!(first.iter().all(|o| o.retain && !o.payload.is_empty()));
        assert_eq!(topics(&first)[0].0, "inferd/kitchen/availability");
        assert_eq!(
            topics(&first)[1].0,
            "homeassistant/binary_sensor/inferd_kitchen/running/config"
        );
        assert!(d.announce(["minilm", "smollm2"], false).is_empty());
        let second = d.announce(["smollm2"], false);
        assert_eq!(
            topics(&second[1..]),
            [
                (
                    "homeassistant/binary_sensor/inferd_kitchen/running/config".into(),
                    false
                ),
                (
                    "homeassistant/sensor/inferd_kitchen/minilm/config".into(),
                    true
                ),
                (
                    "homeassistant/sensor/inferd_kitchen/smollm2/config".into(),
                    false
                ),
            ]
        );
        assert_eq!(d.announce(["smollm2"], true).len(), 3, "cleared only once");
    }

    #[test]
    fn ids_are_what_home_assistant_takes() {
        let mut d = Discovery::new(Topics {
            prefix: "inferd".into(),
            node: "box.local".into(),
        });
        let out = &d.announce(["smollm2-1.7b"], true)[1..];
        assert_eq!(
            out[1].topic,
            "homeassistant/sensor/inferd_box_local/smollm2-1_7b/config"
        );
        let config: serde_json::Value = serde_json::from_slice(&out[1].payload).unwrap();
        assert_eq!(config["unique_id"], "inferd_box_local_smollm2-1_7b_state");
    }
}
