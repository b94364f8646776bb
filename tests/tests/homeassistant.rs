//! Home Assistant MQTT discovery against mosquitto: the topics and payloads Home Assistant
//! documents (`<discovery prefix>/<component>/<node id>/<object id>/config`, retained; an empty
//! retained config removes an entity; its birth message `homeassistant/status` → `online`), and
//! the configs' templates rendered by Jinja2, Home Assistant's template engine, on inferd's real
//! retained status.

use std::collections::BTreeMap;
use std::process::Command;

use inferd_e2e::*;
use serde_json::Value;

const RUNNING: &str = "homeassistant/binary_sensor/inferd_n1/running/config";

fn config(broker: &Broker) -> BTreeMap<String, Value> {
    broker
        .messages("homeassistant/+/inferd_n1/+/config", 100, 2)
        .into_iter()
        .map(|(t, p)| (t, serde_json::from_str(&p).expect("a JSON config")))
        .collect()
}

/// Renders a Home Assistant template the way it does: Jinja2 with the payload as `value_json`.
fn render(template: &str, payload: &str) -> String {
    let script = "import json, sys, jinja2\n\
                  t, p = sys.argv[1], sys.argv[2]\n\
                  print(jinja2.Environment().from_string(t).render(value_json=json.loads(p)))";
    let out = Command::new(python())
        .args(["-c", script, template, payload])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn home_assistant_discovers_the_daemon_and_its_models() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_test_model("ops", "ops", "kind = \"tensor\"\n");
    let conf = format!("{}homeassistant = true\n", broker.config("n1"));
    let mut d = Daemon::start_with(&bus, &repo, &conf);
    d.wait_settled();
    broker.wait_online("n1");

    let configs = config(&broker);
    let topics: Vec<&str> = configs.keys().map(String::as_str).collect();
    assert_eq!(
        topics,
        [
            RUNNING,
            "homeassistant/sensor/inferd_n1/minilm/config",
            "homeassistant/sensor/inferd_n1/ops/config",
        ]
    );
    let running = &configs[RUNNING];
    assert_eq!(running["state_topic"], "inferd/n1/status");
    assert_eq!(running["device_class"], "running");
    assert_eq!(running["device"]["identifiers"][0], "inferd_n1");
    let minilm = &configs["homeassistant/sensor/inferd_n1/minilm/config"];
    assert_eq!(minilm["unique_id"], "inferd_n1_minilm_state");
    assert_eq!(minilm["availability_mode"], "all");
    assert_eq!(minilm["availability"][0]["topic"], "inferd/n1/availability");
    assert_eq!(minilm["device"], running["device"], "one device");

    // The plain availability Home Assistant expects, and the templates on the real status.
    let availability = broker.messages("inferd/n1/availability", 1, 2);
    assert_eq!(
        availability,
        [("inferd/n1/availability".into(), "online".into())]
    );
    let status = broker.messages("inferd/n1/status", 1, 2).remove(0).1;
    assert_eq!(
        render(running["value_template"].as_str().unwrap(), &status),
        "ON"
    );
    let state = minilm["value_template"].as_str().unwrap();
    assert_eq!(render(state, &status), "ready");
    let offline = r#"{"state": "offline", "version": "0"}"#;
    assert_eq!(render(state, offline), "unknown");
    let available = minilm["availability"][1]["value_template"]
        .as_str()
        .unwrap();
    assert_eq!(render(available, offline), "offline");
    assert_eq!(
        render(running["value_template"].as_str().unwrap(), offline),
        "OFF"
    );

    // Home Assistant restarted: its birth message has the configs sent again.
    let again = std::thread::spawn({
        let (port, filter) = (broker.port, "homeassistant/+/inferd_n1/+/config");
        move || {
            let out = Command::new("mosquitto_sub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
                .args(["-R", "-C", "3", "-W", "10"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).lines().count()
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    broker.publish("homeassistant/status", "online");
    assert_eq!(
        again.join().unwrap(),
        3,
        "configs sent again after the birth message"
    );

    // A model removed from the repository: its entity's config is cleared.
    std::fs::remove_dir_all(repo.path().join("ops")).unwrap();
    let out = inferctl(&d.bus, &["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while config(&broker).contains_key("homeassistant/sensor/inferd_n1/ops/config") {
        assert!(
            std::time::Instant::now() < deadline,
            "the ops config stayed"
        );
    }
    assert!(config(&broker).contains_key("homeassistant/sensor/inferd_n1/minilm/config"));

    // A clean stop says offline on the availability topic too.
    assert!(d.stop().success());
    let availability = broker.messages("inferd/n1/availability", 1, 2);
    assert_eq!(
        availability,
        [("inferd/n1/availability".into(), "offline".into())]
    );
}
