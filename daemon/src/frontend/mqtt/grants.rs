//! Which priorities an MQTT request may claim. Any client on a shared broker can write
//! `"priority": "interactive"`, so the operator grants it per topic filter (`[[mqtt.grant]]`);
//! without a grant MQTT requests are `background`. Route messages claim nothing: a route's
//! `options.priority` is the operator's own choice.

use serde_json::{Map, Value};

use super::routes::matches;
use super::wire::WireError;
use crate::config::mqtt::GrantConfig;
use crate::work::job::Priority;

#[derive(Debug, Clone)]
pub struct Grants(Vec<(String, Vec<Priority>)>);

impl Grants {
    /// From validated config: every priority name parses.
    pub fn new(cfg: &[GrantConfig]) -> Grants {
        Grants(
            cfg.iter()
                .map(|g| {
                    let ps = g
                        .priorities
                        .iter()
                        .filter_map(|p| Priority::parse(p))
                        .collect();
                    (g.topics.clone(), ps)
                })
                .collect(),
        )
    }

    /// What a request on `topic` may claim: the first grant whose filter matches, else
    /// `background` only.
    fn allowed(&self, topic: &str) -> &[Priority] {
        self.0
            .iter()
            .find(|(filter, _)| matches(filter, topic).is_some())
            .map_or(&[Priority::Background], |(_, ps)| ps.as_slice())
    }

    /// `Err(access_denied)` when the request's `options.priority` claims what `topic` is not
    /// granted. A value that is not a priority is left to the option parser, which names it.
    pub fn check(&self, topic: &str, options: &Map<String, Value>) -> Result<(), WireError> {
        let Some(claimed) = options
            .get("priority")
            .and_then(Value::as_str)
            .and_then(Priority::parse)
        else {
            return Ok(());
        };
        let allowed = self.allowed(topic);
        if allowed.contains(&claimed) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
        Err(WireError::new(
            "access_denied",
            format!(
                "priority {:?} is not granted on {topic:?}; it may claim: {} (mqtt.grant)",
                claimed.as_str(),
                names.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(p: &str) -> Map<String, Value> {
        json!({"priority": p}).as_object().unwrap().clone()
    }

    #[test]
    fn background_unless_granted() {
        let g = Grants::new(&[GrantConfig {
            topics: "inferd/+/req/assistant/+".into(),
            priorities: vec!["interactive".into(), "background".into()],
        }]);
        let t = "inferd/n1/req/minilm/embed";
        assert!(g.check(t, &opts("background")).is_ok());
        assert!(g.check(t, &Map::new()).is_ok(), "no claim");
        let e = g.check(t, &opts("interactive")).unwrap_err();
        assert_eq!(e.code, "access_denied");
        assert!(e.message.contains("may claim: background"), "{}", e.message);
        assert!(g
            .check("inferd/n1/req/assistant/chat", &opts("interactive"))
            .is_ok());
        assert!(
            g.check(t, &opts("urgent")).is_ok(),
            "not a priority: the option parser says so"
        );
        let interactive_only = Grants::new(&[GrantConfig {
            topics: "#".into(),
            priorities: vec!["interactive".into()],
        }]);
        assert!(interactive_only.check(t, &opts("background")).is_err());
    }
}
