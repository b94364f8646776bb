//! MQTT set up in other ways: routes that turn sensor messages into results, the daemon on
//! MQTT 3.1.1, and password authentication (right and wrong credentials).

use std::time::{Duration, Instant};

use inferd_e2e::*;
use serde_json::json;

const ROUTES: &str = r#"
[[mqtt.route]]
from = "sensors/+/text"
model = "intent"
op = "classify"
to = "sensors/{1}/intent"
options = { top_k = 1 }

[[mqtt.route]]
from = "sensors/+/json"
model = "intent"
op = "classify"
input_field = "text"
to = "sensors/{1}/intent"

[[mqtt.route]]
from = "vibration/+/raw"
model = "double"
op = "infer"
input_name = "x"
shape = [1, 4]
to = "vibration/{1}/out"
"#;

fn repo() -> Repo {
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_llm("intent", "intent", "");
    repo.add_test_model("double", "double", "kind = \"tensor\"\n");
    repo
}

#[test]
fn routes_publish_results_and_report_bad_messages() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = repo();
    let _d = Daemon::start_with(&bus, &repo, &(broker.config("n1") + ROUTES));
    broker.wait_online("n1");
    let results = broker.subscribe("sensors/+/intent", 3);
    let errors = broker.subscribe("inferd/n1/route-errors", 1);
    broker.publish("sensors/kitchen/text", "turn on the lights");
    broker.publish("sensors/hall/json", "this is not json");
    broker.publish(
        "sensors/porch/json",
        &json!({"text": "what's the weather tomorrow"}).to_string(),
    );
    broker.publish("sensors/attic/text", "play some music");
    let results = results.collect();
    let by_topic = |t: &str| {
        results
            .iter()
            .find(|r| r["topic"] == t)
            .unwrap_or_else(|| panic!("no result for {t}: {results:?}"))
            .clone()
    };
    let kitchen = by_topic("sensors/kitchen/text");
    assert_eq!(kitchen["result"]["labels"][0][0]["label"], "lights_on");
    assert_eq!(
        kitchen["result"]["labels"][0].as_array().unwrap().len(),
        1,
        "top_k from the route"
    );
    assert_eq!(
        by_topic("sensors/porch/json")["result"]["labels"][0][0]["label"],
        "weather"
    );
    assert_eq!(
        by_topic("sensors/attic/text")["result"]["labels"][0][0]["label"],
        "music"
    );
    let e = &errors.collect()[0];
    assert_eq!(e["topic"], "sensors/hall/json");
    assert_eq!(e["route"], "sensors/+/json");
    assert_eq!(e["error"]["code"], "invalid_input");

    // infer: a JSON number array, or raw little-endian f32, fills the declared shape.
    let outs = broker.subscribe("vibration/+/out", 2);
    broker.publish("vibration/pump/raw", "[1, 2, 3, 4]");
    let raw: Vec<u8> = [0.5f32, -1.0, 8.0, 0.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    broker.publish_bytes("vibration/fan/raw", &raw);
    let outs = outs.collect();
    let y = |src: &str| {
        outs.iter().find(|o| o["topic"] == src).unwrap()["result"]["outputs"]["y"].clone()
    };
    assert_eq!(y("vibration/pump/raw")["data"], json!([2.0, 4.0, 6.0, 8.0]));
    assert_eq!(
        y("vibration/fan/raw")["data"],
        json!([1.0, -2.0, 16.0, 0.0])
    );
    assert_eq!(y("vibration/fan/raw")["shape"], json!([1, 4]));
}

#[test]
fn the_daemon_speaks_mqtt_3_1_1() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = repo();
    let _d = Daemon::start_with(&bus, &repo, &(broker.config("old") + "protocol = 3\n"));
    broker.wait_online("old");
    let sub = broker.subscribe("test/v3", 1);
    broker.publish(
        "inferd/old/req/intent/classify",
        &json!({"id": "1", "input": {"texts": ["set a timer for ten minutes"]}, "reply_to": "test/v3"}).to_string(),
    );
    let r = &sub.collect()[0];
    assert_eq!(
        (r["id"].as_str(), r["ok"].as_bool()),
        (Some("1"), Some(true))
    );
    assert_eq!(r["result"]["labels"][0][0]["label"], "timer");
}

#[test]
fn passwords_come_from_a_file_and_wrong_ones_are_retried_not_fatal() {
    let broker = Broker::with_password("inferd", "s3cret-pass");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, "s3cret-pass\n").unwrap();
    std::fs::write(&bad, "wrong-pass\n").unwrap();
    let repo = repo();
    let auth = |file: &std::path::Path, node: &str| {
        format!(
            "{}username = \"inferd\"\npassword_file = \"{}\"\n",
            broker.config(node),
            file.display()
        )
    };
    let bus = Bus::start();
    let d = Daemon::start_with(&bus, &repo, &auth(&good, "good"));
    broker.wait_online("good");

    let bus2 = Bus::start();
    let wrong = Daemon::start_with(&bus2, &repo, &auth(&bad, "bad"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while wrong.log().matches("retrying in").count() < 2 {
        assert!(Instant::now() < deadline, "no retries:\n{}", wrong.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = wrong.log();
    assert!(log.contains("MQTT broker connection failed"), "{log}");
    assert!(
        log.contains("NotAuthorized") || log.contains("BadUserNamePassword"),
        "{log}"
    );
    assert!(
        !log.contains("wrong-pass") && !d.log().contains("s3cret-pass"),
        "passwords are never logged"
    );
    // Still serving on D-Bus.
    assert_eq!(wrong.models()["intent"]["state"], "ready");
}

#[test]
fn tls_with_a_private_ca() {
    let broker = Broker::with_tls("inferd", "tls-pass");
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "tls-pass\n").unwrap();
    let ca = broker.ca_file.clone().unwrap();
    let config = format!(
        "{}username = \"inferd\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
        broker.config("secure"),
        pass.display(),
        ca.display()
    );
    assert!(config.contains("mqtts://"));
    let bus = Bus::start();
    let repo = repo();
    let _d = Daemon::start_with(&bus, &repo, &config);
    broker.wait_online("secure");
    let sub = broker.subscribe("test/tls", 1);
    broker.publish(
        "inferd/secure/req/intent/classify",
        &json!({"id": "t", "input": {"texts": ["turn off the lights"]}, "reply_to": "test/tls"})
            .to_string(),
    );
    assert_eq!(
        sub.collect()[0]["result"]["labels"][0][0]["label"],
        "lights_off"
    );
}

#[test]
fn inferctl_over_mqtt() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = repo();
    repo.add_llm("think", "think", "");
    let d = Daemon::start_with(&bus, &repo, &broker.config("n1"));
    broker.wait_online("n1");
    let url = broker.url();
    let ctl = |args: &[&str]| {
        let mut all = vec!["--mqtt", url.as_str(), "--node", "n1"];
        all.extend(args);
        inferctl(&d.bus, &all)
    };
    let out = ctl(&["--json", "models"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let models: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = models
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["double", "intent", "minilm", "think"]);

    let out = ctl(&["classify", "intent", "turn on the lights", "--top-k", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("lights_on"), "{}", stdout(&out));

    let out = ctl(&["--json", "embed", "minilm", "hello"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["embeddings"][0].as_array().unwrap().len(), 384);

    let script: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(test_models().join("think/script.json")).unwrap(),
    )
    .unwrap();
    let out = ctl(&["generate", "think", "2+2?", "--hide-reasoning"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim_end_matches('\n'),
        script["answer"].as_str().unwrap()
    );

    let out = ctl(&[
        "--json",
        "infer",
        "double",
        "--input",
        "x=float32:1x4:1,2,3,4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["y"]["data"], json!([2.0, 4.0, 6.0, 8.0]));

    let chat = inferctl_with_input(
        &d.bus,
        &[
            "--mqtt",
            &url,
            "--node",
            "n1",
            "chat",
            "think",
            "--hide-reasoning",
        ],
        "2+2?\n",
    );
    assert!(chat.status.success(), "{}", stderr(&chat));
    assert_eq!(
        stdout(&chat).trim_end_matches('\n'),
        script["answer"].as_str().unwrap()
    );

    let out = ctl(&["embed", "nosuch", "hi"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ModelNotFound"), "{}", stderr(&out));
    let out = inferctl(&d.bus, &["--mqtt", &url, "models"]);
    assert!(
        stderr(&out).contains("--node NAME or --pool"),
        "{}",
        stderr(&out)
    );
}
