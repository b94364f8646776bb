//! The MQTT frontend end to end: a private mosquitto, the real daemon, and real clients
//! (`mosquitto_pub`/`mosquitto_sub` for MQTT 3.1.1 with `reply_to`, rumqttc for MQTT 5
//! Response Topic, Correlation Data, expiry and streaming).

use std::time::Duration;

use inferd_e2e::broker::{json_of, props, v5_client};
use inferd_e2e::*;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};

/// One input per dtype for the `ops` test model (a*2+1, b+b, c+1, d*3, e+1, not f); `c` = 41 is
/// sent as base64 of its little-endian bytes.
static OPS_INPUTS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({
        "a": {"dtype": "float32", "shape": [1, 3], "data": [1, 2, 3]},
        "b": {"dtype": "float16", "shape": [1, 3], "data": [0.5, 1, -2]},
        "c": {"dtype": "int64", "shape": [1], "data_b64": "KQAAAAAAAAA="},
        "d": {"dtype": "int32", "shape": [1, 2], "data": [-4, 5]},
        "e": {"dtype": "uint8", "shape": [1], "data": [255]},
        "f": {"dtype": "bool", "shape": [1], "data": [true]}
    })
});

fn setup() -> (Broker, Bus, Repo, Daemon) {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_llm("intent", "intent", "");
    repo.add_llm("think", "think", "");
    repo.add_test_model("ops", "ops", "kind = \"tensor\"\n");
    repo.add_test_model(
        "slow",
        "slow",
        "kind = \"tensor\"\n[batching]\nmax_batch = 1\n",
    );
    let d = Daemon::start_with(&bus, &repo, &broker.config("n1"));
    broker.wait_online("n1");
    (broker, bus, repo, d)
}

/// Answers by id, from `mosquitto_sub` output.
fn by_id(replies: &[Value], id: &str) -> Value {
    replies
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no reply for {id}: {replies:?}"))
        .clone()
}

#[test]
fn every_op_round_trips_with_mosquitto_clients_and_reply_to() {
    let (broker, _bus, _repo, d) = setup();
    // The retained status carries the health D-Bus `Health()` reports.
    let status = broker.wait_online("n1");
    assert_eq!(status["health"], "ok", "{status}");
    assert!(status["uptime_s"].is_u64() && status["rss_bytes"].as_u64().unwrap() > 0);
    let minilm = status["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "minilm")
        .unwrap();
    assert_eq!(
        (&minilm["state"], &minilm["queue_depth"]),
        (&json!("ready"), &json!(0))
    );
    let sub = broker.subscribe("test/replies", 5);
    let req = |topic: &str, id: &str, input: Value, options: Value| {
        let payload =
            json!({"id": id, "input": input, "options": options, "reply_to": "test/replies"});
        broker.publish(topic, &payload.to_string());
    };
    req(
        "inferd/n1/req/minilm/embed",
        "e",
        json!({"texts": ["A man is playing a guitar."]}),
        json!({}),
    );
    req(
        "inferd/n1/req/intent/classify",
        "c",
        json!({"texts": ["turn on the lights please"]}),
        json!({"top_k": 1}),
    );
    req(
        "inferd/n1/req/think/generate",
        "g",
        json!({"prompt": "What is two plus two?"}),
        json!({"reasoning": "hide"}),
    );
    req(
        "inferd/n1/req/think/chat",
        "h",
        json!({"messages": [{"role": "user", "content": "2+2?"}]}),
        json!({}),
    );
    req(
        "inferd/n1/req/ops/infer",
        "i",
        json!({"inputs": OPS_INPUTS.clone()}),
        json!({}),
    );
    let replies = sub.collect();
    assert!(replies.iter().all(|r| r["ok"] == true), "{replies:?}");

    // The embedding equals what D-Bus gives for the same text.
    let v = by_id(&replies, "e")["result"]["embeddings"][0].clone();
    let dbus = busctl_json(
        &d.bus,
        "Embed",
        "sasa{sv}",
        &["minilm", "1", "A man is playing a guitar.", "0"],
    );
    let want = dbus["data"][0][0].as_array().unwrap();
    assert_eq!(v.as_array().unwrap().len(), 384);
    for (a, b) in v.as_array().unwrap().iter().zip(want) {
        assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-6);
    }
    assert_eq!(
        by_id(&replies, "c")["result"]["labels"][0][0]["label"],
        "lights_on"
    );
    let script: Value = serde_json::from_str(
        &std::fs::read_to_string(test_models().join("think/script.json")).unwrap(),
    )
    .unwrap();
    let g = by_id(&replies, "g");
    assert_eq!(g["result"]["text"], script["answer"]);
    assert!(g["result"].get("reasoning").is_none(), "hidden");
    assert!(g["usage"]["reasoning_tokens"].as_u64().unwrap() > 0);
    let h = by_id(&replies, "h");
    assert_eq!(h["result"]["reasoning"], script["reasoning"]);
    assert_eq!(h["result"]["finish_reason"], "stop");
    let i = by_id(&replies, "i");
    // ops: a*2+1, b+b, c+1 (c = 41, sent as base64), d*3, e+1 (wraps), not f
    let out = &i["result"]["outputs"];
    assert_eq!(out["a_out"]["data"], json!([3.0, 5.0, 7.0]));
    assert_eq!(out["b_out"]["data"], json!([1.0, 2.0, -4.0]));
    assert_eq!(out["c_out"]["data"], json!([42]));
    assert_eq!(out["d_out"]["data"], json!([-12, 15]));
    assert_eq!(out["e_out"]["data"], json!([0]));
    assert_eq!(out["f_out"]["data"], json!([false]));
    assert_eq!(out["d_out"]["shape"], json!([1, 2]));
}

#[test]
fn malformed_requests_get_typed_errors_and_the_listener_keeps_serving() {
    let (broker, _bus, _repo, _d) = setup();
    let cases: [(&str, String, &str); 8] = [
        ("inferd/n1/req/minilm/embed", "{not json".into(), "invalid_input"),
        ("inferd/n1/req/minilm/embed", json!({"input": {"texts": ["x"]}, "reply_to": "test/r"}).to_string(), "invalid_input"),
        ("inferd/n1/req/minilm/sing", json!({"id": "op", "reply_to": "test/r"}).to_string(), "invalid_input"),
        ("inferd/n1/req/nosuch/embed", json!({"id": "m", "input": {"texts": ["x"]}, "reply_to": "test/r"}).to_string(), "model_not_found"),
        ("inferd/n1/req/minilm/embed", json!({"id": "t", "input": {"texts": "x"}, "reply_to": "test/r"}).to_string(), "invalid_input"),
        ("inferd/n1/req/minilm/embed", json!({"id": "o", "input": {"texts": ["x"]}, "options": {"top_kk": 1}, "reply_to": "test/r"}).to_string(), "invalid_input"),
        ("inferd/n1/req/think/generate", json!({"id": "k", "input": {"prompt": "x"}, "options": {"temperature": "hot"}, "reply_to": "test/r"}).to_string(), "invalid_input"),
        ("inferd/n1/req/minilm/embed", format!("{{\"id\":\"big\",\"reply_to\":\"test/r\",\"pad\":\"{}\"}}", "x".repeat(1_100_000)), "too_large"),
    ];
    let errors = broker.subscribe("inferd/n1/error", 2);
    let replies = broker.subscribe("test/r", 6);
    for (topic, payload, _) in &cases {
        broker.publish(topic, payload);
    }
    // No reply address could be read (not JSON; too large to parse on 3.1.1): the error topic.
    let on_error_topic = errors.collect();
    let codes: Vec<&str> = on_error_topic
        .iter()
        .map(|e| e["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["invalid_input", "too_large"], "{on_error_topic:?}");
    assert!(on_error_topic
        .iter()
        .all(|e| e["topic"] == "inferd/n1/req/minilm/embed"));
    let replies = replies.collect();
    for (id, (_, _, code)) in ["op", "m", "t", "o", "k"].iter().zip(&cases[2..7]) {
        let r = by_id(&replies, id);
        assert_eq!(
            (r["ok"].as_bool(), r["error"]["code"].as_str()),
            (Some(false), Some(*code)),
            "{r}"
        );
        assert!(!r["error"]["message"].as_str().unwrap().is_empty());
    }
    // The request without an id is still answered at its reply_to.
    assert!(
        replies.iter().any(|r| r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no \"id\"")),
        "{replies:?}"
    );

    // Still serving.
    let sub = broker.subscribe("test/after", 1);
    broker.publish(
        "inferd/n1/req/minilm/embed",
        &json!({"id": "ok", "input": {"texts": ["still here"]}, "reply_to": "test/after"})
            .to_string(),
    );
    assert_eq!(sub.collect()[0]["ok"], true);
}

#[test]
fn v5_response_topic_correlation_streaming_and_expiry() {
    let (broker, _bus, _repo, _d) = setup();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (c, mut rx) = v5_client(&broker, "test-v5", "v5/replies", false).await;
        // Every op, answered at the Response Topic with its Correlation Data; no reply_to.
        let requests = [
            ("minilm/embed", json!({"texts": ["hi"]})),
            (
                "intent/classify",
                json!({"texts": ["what is the weather like"]}),
            ),
            ("think/generate", json!({"prompt": "2+2?"})),
            (
                "think/chat",
                json!({"messages": [{"role": "user", "content": "2+2?"}]}),
            ),
            ("ops/infer", json!({"inputs": OPS_INPUTS.clone()})),
        ];
        for (i, (target, input)) in requests.iter().enumerate() {
            let body = json!({"id": format!("v{i}"), "input": input});
            let topic = format!("inferd/n1/req/{target}");
            c.publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                false,
                body.to_string(),
                props("v5/replies", &format!("c{i}"), None),
            )
            .await
            .unwrap();
        }
        for _ in 0..requests.len() {
            let p = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap();
            let v = json_of(&p);
            assert_eq!(v["ok"], true, "{v}");
            let i = v["id"].as_str().unwrap().trim_start_matches('v').to_owned();
            let corr = p.properties.unwrap().correlation_data.unwrap();
            assert_eq!(
                corr,
                format!("c{i}").as_bytes(),
                "each reply carries its own correlation"
            );
        }

        let body =
            json!({"id": "s1", "input": {"prompt": "What is two plus two?"}, "stream": true});
        c.publish_with_properties(
            "inferd/n1/req/think/generate",
            QoS::AtLeastOnce,
            false,
            body.to_string(),
            props("v5/replies", "corr-1", None),
        )
        .await
        .unwrap();
        let (mut seqs, mut content, mut reasoning) = (Vec::new(), String::new(), String::new());
        loop {
            let p = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap();
            let pr = p.properties.clone().unwrap();
            assert_eq!(
                pr.correlation_data.as_deref(),
                Some(&b"corr-1"[..]),
                "correlation copied back"
            );
            assert_eq!(pr.content_type.as_deref(), Some("application/json"));
            assert!(pr.user_properties.contains(&("status".into(), "ok".into())));
            let v = json_of(&p);
            seqs.push(v["seq"].as_u64().unwrap());
            if v["done"] == true {
                assert_eq!(v["finish_reason"], "stop");
                break;
            }
            match v["channel"].as_str().unwrap() {
                "reasoning" => reasoning.push_str(v["delta"].as_str().unwrap()),
                _ => content.push_str(v["delta"].as_str().unwrap()),
            }
        }
        assert_eq!(
            seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "seq counts up with no gaps"
        );
        assert_eq!(content, " It is 4.");
        assert!(!reasoning.is_empty());

        // Expiry: a request queued behind a slow one past its 1 s Message Expiry is answered
        // `timeout` without running.
        let slow = |id: &str, iters: u64| {
            let x = json!({"dtype": "float32", "shape": [1, 64], "data": vec![0.1; 64]});
            let n = json!({"dtype": "int64", "shape": [1], "data": [iters]});
            json!({"id": id, "input": {"inputs": {"x": x, "iters": n}}})
        };
        let (busy, late) = (slow("busy", 3_000_000), slow("late", 1));
        c.publish_with_properties(
            "inferd/n1/req/slow/infer",
            QoS::AtLeastOnce,
            false,
            busy.to_string(),
            props("v5/replies", "b", None),
        )
        .await
        .unwrap();
        c.publish_with_properties(
            "inferd/n1/req/slow/infer",
            QoS::AtLeastOnce,
            false,
            late.to_string(),
            props("v5/replies", "l", Some(1)),
        )
        .await
        .unwrap();
        let mut got = std::collections::HashMap::new();
        while got.len() < 2 {
            let p = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .unwrap()
                .unwrap();
            let v = json_of(&p);
            got.insert(v["id"].as_str().unwrap().to_owned(), v);
        }
        assert_eq!(got["late"]["error"]["code"], "timeout", "{:?}", got["late"]);
    });
}
