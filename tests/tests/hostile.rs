//! R8, hostile and careless clients: every class of request that could cut inferd off its
//! broker, stall its watchdog, or answer the wrong requester, driven against the real daemon
//! over real mosquitto and dbus-daemon, while an honest client keeps asking.
//!
//! Pass means: inferd's MQTT session never drops (its retained status never says `offline`),
//! the honest client's requests are all answered, with its own answers, no request is answered
//! with another's result, RSS stays within `RSS_BOUND`, and the watchdog never misses a ping.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferd_e2e::broker::{json_of, props, v5_client, v5_client_at, Publish5};
use inferd_e2e::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

/// What the hostile run may add to inferd's RSS (after its models are loaded and warm): the
/// remembered answers (`mqtt.dedupe_bytes`, 16 MiB), the prompt caches, allocator slack.
const RSS_BOUND: u64 = 96 << 20;
/// The broker's Maximum Packet Size: answers larger than this must become `too_large`.
const BROKER_MAX: usize = 128 << 10;
/// systemd's WatchdogSec for the run; pings come every half of it.
const WATCHDOG: Duration = Duration::from_secs(3);

fn config(broker: &Broker) -> String {
    format!(
        "{}max_payload = 65536\nmax_in_flight = 4\n\
         [[mqtt.grant]]\ntopics = \"inferd/n1/req/minilm/embed\"\npriorities = [\"interactive\", \"background\"]\n\
         [limits]\nmax_texts = 64\nmax_text_bytes = 4096\nmax_prompt_bytes = 16384\nmax_stop = 2\nmax_tensor_bytes = 4096\n",
        broker.config("n1")
    )
}

/// Publishes `body` with Response Topic `reply` and waits for the answer with its `id`.
async fn ask(
    c: &AsyncClient,
    rx: &mut UnboundedReceiver<Publish5>,
    topic: &str,
    reply: &str,
    body: Value,
) -> Value {
    let id = body["id"].clone();
    c.publish_with_properties(
        topic,
        QoS::AtLeastOnce,
        false,
        body.to_string(),
        props(reply, "c", None),
    )
    .await
    .unwrap();
    next_with(rx, |v| v["id"] == id).await
}

/// The next message on `rx` that satisfies `want` (others are dropped), within 60 s.
async fn next_with(rx: &mut UnboundedReceiver<Publish5>, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let p = tokio::time::timeout(left, rx.recv())
            .await
            .expect("no answer within 60 s")
            .expect("the client's link ended");
        let v = json_of(&p);
        if want(&v) {
            return v;
        }
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("ok")
}

/// The honest client: one embed request every 200 ms on its own reply topic, each checked to
/// be its own answer (its id, its correlation data, its text's embedding).
struct Honest {
    sent: usize,
    answered: usize,
    /// Answered `overloaded`: `mqtt.max_in_flight` is shared by every MQTT client (MQTT does
    /// not say who published), so while a flood holds it the honest client is told to retry.
    overloaded: usize,
    wrong: Vec<String>,
}

async fn honest(port: u16, stop: Arc<Mutex<bool>>) -> Honest {
    let (c, mut rx) = v5_client_at(port, "r8-honest", "r8/honest", false).await;
    let mut h = Honest {
        sent: 0,
        answered: 0,
        overloaded: 0,
        wrong: Vec::new(),
    };
    // Two texts whose embeddings differ: an answer meant for the other would show.
    let mut refs = Vec::new();
    for (id, text) in [("ref-a", "alpha"), ("ref-b", "beta")] {
        let body = json!({"id": id, "input": {"texts": [text]}});
        let v = ask(&c, &mut rx, "inferd/n1/req/minilm/embed", "r8/honest", body).await;
        refs.push(v["result"]["embeddings"].clone());
    }
    while !*stop.lock().unwrap() {
        let i = h.sent;
        let id = format!("honest-{i}");
        let text = ["alpha", "beta"][i % 2];
        let body = json!({"id": id, "input": {"texts": [text]}});
        c.publish_with_properties(
            "inferd/n1/req/minilm/embed",
            QoS::AtLeastOnce,
            false,
            body.to_string(),
            props("r8/honest", &id, None),
        )
        .await
        .unwrap();
        h.sent += 1;
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        match got {
            Ok(Some(p)) => {
                h.answered += 1;
                let v = json_of(&p);
                let corr = p
                    .properties
                    .as_ref()
                    .and_then(|pr| pr.correlation_data.clone())
                    .unwrap_or_default();
                if v["id"] != id.as_str() || corr != id.as_bytes() {
                    h.wrong.push(format!("{id}: {v}"));
                } else if code(&v) == "overloaded" {
                    h.overloaded += 1;
                } else if v["ok"] != true {
                    h.wrong.push(format!("{id}: {v}"));
                } else if v["result"]["embeddings"] != refs[i % 2] {
                    h.wrong.push(format!("{id}: another text's embedding"));
                }
            }
            _ => h.wrong.push(format!("{id}: no answer within 30 s")),
        }
        // An honest client's pace (5 a second): load, not a wait for anything.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h
}

/// Everything published under the broker (except `$` topics), by topic.
async fn watcher(broker: &Broker) -> (AsyncClient, UnboundedReceiver<Publish5>) {
    v5_client(broker, "r8-watch", "#", false).await
}

#[test]
fn r8_hostile_clients() {
    let broker = Broker::with_options(&format!("max_packet_size {BROKER_MAX}\n"));
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_endless_llm("tiny", "");
    repo.add_llm(
        "smollm2-fp32",
        "smollm2",
        "[generation]\nprefill_chunk = 64\n",
    );
    repo.add_test_model(
        "slow",
        "slow",
        "kind = \"tensor\"\n[batching]\nmax_batch = 1\n",
    );
    let mut notify = NotifySocket::new();
    let usec = WATCHDOG.as_micros().to_string();
    let d = Daemon::launch(
        &bus,
        &repo,
        Launch {
            config: &config(&broker),
            env: &[("NOTIFY_SOCKET", notify.path()), ("WATCHDOG_USEC", &usec)],
            wrapper: &["sh", "-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""],
            ..Default::default()
        },
    );
    // systemd reads every notification as it comes; so must the test, from the start (the
    // socket's queue is short, and a full one blocks the sender).
    let reading = Arc::new(Mutex::new(true));
    let reader = {
        let reading = reading.clone();
        std::thread::spawn(move || {
            while *reading.lock().unwrap() {
                notify.collect_for(Duration::from_millis(200));
            }
            notify
        })
    };
    d.wait_settled();
    broker.wait_online("n1");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_w, mut seen) = rt.block_on(watcher(&broker));
    let stop = Arc::new(Mutex::new(false));
    let honest_task = {
        let stop = stop.clone();
        let port = broker.port;
        rt.spawn(async move { honest(port, stop).await })
    };
    // Warm every path once, then measure from there.
    rt.block_on(async {
        let (c, mut rx) = v5_client(&broker, "r8-warm", "r8/warm", false).await;
        ask(
            &c,
            &mut rx,
            "inferd/n1/req/tiny/generate",
            "r8/warm",
            json!({"id": "w", "input": {"prompt": "hi"}, "options": {"max_tokens": 4}}),
        )
        .await;
    });
    let rss_start = rss_of(d.pid());
    let mut classes: BTreeMap<&str, String> = BTreeMap::new();

    rt.block_on(async {
        let (c, mut rx) = v5_client(&broker, "r8-a", "r8/a", false).await;
        let (cb, mut rxb) = v5_client(&broker, "r8-b", "r8/b", false).await;

        // 1. Reply topics inferd must not publish to: no answer, no publish, a log line.
        let long = "x".repeat(300);
        let forbidden = ["", "a/+/b", "a/#", "a\u{0}b", "a\u{7}b", "r8/\u{ffff}", "$SYS/r8", "inferd/n1/status",
                         "inferd/n1/cancel", "inferd/n2/req/minilm/embed", long.as_str()];
        // An unknown op on a bad reply topic: refused, and still not answered there.
        let body = json!({"id": "bad-reply-op", "reply_to": "r8/\u{fffe}"});
        c.publish("inferd/n1/req/minilm/bogus", QoS::AtLeastOnce, false, body.to_string()).await.unwrap();
        for (i, t) in forbidden.iter().enumerate() {
            let body = json!({"id": format!("bad-reply-{i}"), "input": {"texts": ["x"]}, "reply_to": t});
            c.publish("inferd/n1/req/minilm/embed", QoS::AtLeastOnce, false, body.to_string()).await.unwrap();
        }
        // A v5 Response Topic under inferd's own tree is treated alike.
        c.publish_with_properties("inferd/n1/req/minilm/embed", QoS::AtLeastOnce, false,
            json!({"id": "bad-reply-v5", "input": {"texts": ["x"]}}).to_string(), props("inferd/n1/status", "c", None))
            .await.unwrap();
        // A request after them is answered: the session survived.
        let v = ask(&c, &mut rx, "inferd/n1/req/minilm/embed", "r8/a", json!({"id": "after-bad", "input": {"texts": ["x"]}})).await;
        assert_eq!(v["ok"], true, "{v}");
        classes.insert("reply topics", format!("{} refused, unanswered", forbidden.len() + 2));

        // 2. An answer larger than the broker takes: `too_large`, never sent.
        let texts: Vec<String> = (0..64).map(|i| format!("sentence number {i}")).collect();
        let v = ask(&c, &mut rx, "inferd/n1/req/minilm/embed", "r8/a", json!({"id": "big-answer", "input": {"texts": texts}})).await;
        assert_eq!(code(&v), "too_large", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("maximum packet size"), "{v}");
        // 3. A request over max_payload: `too_large` (at its Response Topic; its id is unread).
        let pad = "y".repeat(100_000);
        let big = json!({"id": "big-request", "input": {"texts": ["x"]}, "pad": pad});
        c.publish_with_properties("inferd/n1/req/minilm/embed", QoS::AtLeastOnce, false, big.to_string(), props("r8/a", "big", None)).await.unwrap();
        let v = next_with(&mut rx, |v| v["id"].is_null()).await;
        assert_eq!(code(&v), "too_large", "{v}");
        classes.insert("sizes", "answer over the broker's 128 KiB and request over max_payload: too_large".into());

        // 4. Duplicates are the same request; the same id with another payload or another
        // requester is another request.
        let alpha = ask(&c, &mut rx, "inferd/n1/req/minilm/embed", "r8/a", json!({"id": "same", "input": {"texts": ["alpha"]}})).await;
        let beta = ask(&c, &mut rx, "inferd/n1/req/minilm/embed", "r8/a", json!({"id": "same", "input": {"texts": ["beta"]}})).await;
        assert_ne!(alpha["result"], beta["result"], "a new payload under an old id got the old answer");
        let again = ask(&c, &mut rx, "inferd/n1/req/minilm/embed", "r8/a", json!({"id": "same", "input": {"texts": ["alpha"]}})).await;
        assert_eq!(again, alpha);
        let other = ask(&cb, &mut rxb, "inferd/n1/req/minilm/embed", "r8/b", json!({"id": "same", "input": {"texts": ["beta"]}})).await;
        assert_eq!(other["result"], beta["result"]);
        classes.insert("duplicates", "same request answered again; same id, other payload or requester: run".into());

        // 5. A stranger cannot cancel another's request.
        let req = json!({"id": "long", "input": {"prompt": "Tell me a story."}, "options": {"max_tokens": 90000}, "stream": true});
        c.publish_with_properties("inferd/n1/req/tiny/generate", QoS::AtLeastOnce, false, req.to_string(), props("r8/a", "c", None)).await.unwrap();
        next_with(&mut rx, |v| v["id"] == "long" && v["seq"] == 0).await;
        cb.publish_with_properties("inferd/n1/cancel", QoS::AtLeastOnce, false, json!({"id": "long"}).to_string(), props("r8/b", "c", None)).await.unwrap();
        c.publish("inferd/n1/cancel", QoS::AtLeastOnce, false, json!({"id": "long", "reply_to": "r8/b"}).to_string()).await.unwrap();
        // Had either cancel been taken, the stream would end within a step: five more pieces
        // after them, none the last, show it goes on.
        for _ in 0..5 {
            let v = next_with(&mut rx, |v| v["id"] == "long").await;
            assert_ne!(v["done"], true, "a stranger's cancel ended it: {v}");
        }
        c.publish_with_properties("inferd/n1/cancel", QoS::AtLeastOnce, false, json!({"id": "long"}).to_string(), props("r8/a", "c", None)).await.unwrap();
        let done = next_with(&mut rx, |v| v["id"] == "long" && v["done"] == true).await;
        assert_eq!(done["finish_reason"], "cancelled");
        classes.insert("cancel", "another requester's cancel ignored; the requester's cancels".into());

        // 6. More requests in flight than mqtt.max_in_flight: the rest are `overloaded`.
        for i in 0..8 {
            let req = json!({"id": format!("flood-{i}"), "input": {"prompt": "Count."}, "options": {"max_tokens": 90000}, "stream": true});
            cb.publish_with_properties("inferd/n1/req/tiny/generate", QoS::AtLeastOnce, false, req.to_string(), props("r8/b", "c", None)).await.unwrap();
        }
        let mut overloaded = 0;
        let mut started = std::collections::BTreeSet::new();
        while overloaded + started.len() < 8 {
            let v = next_with(&mut rxb, |v| v["id"].as_str().is_some_and(|i| i.starts_with("flood-"))).await;
            if code(&v) == "overloaded" {
                assert!(v["error"]["message"].as_str().unwrap().contains("mqtt.max_in_flight"), "{v}");
                overloaded += 1;
            } else {
                started.insert(v["id"].as_str().unwrap().to_owned());
            }
        }
        assert!(overloaded >= 4, "{overloaded} of 8 refused with max_in_flight = 4");
        for id in &started {
            cb.publish_with_properties("inferd/n1/cancel", QoS::AtLeastOnce, false, json!({"id": id}).to_string(), props("r8/b", "c", None)).await.unwrap();
        }
        let mut ended = 0;
        while ended < started.len() {
            next_with(&mut rxb, |v| v["done"] == true).await;
            ended += 1;
        }
        classes.insert("in flight", format!("{overloaded} of 8 overloaded past max_in_flight = 4"));

        // 7. Priorities are granted per topic.
        let v = ask(&c, &mut rx, "inferd/pool/req/minilm/embed", "r8/a", json!({"id": "claim", "input": {"texts": ["x"]}, "options": {"priority": "interactive"}})).await;
        assert_eq!(code(&v), "access_denied", "{v}");
        let v = ask(&c, &mut rx, "inferd/n1/req/minilm/embed", "r8/a", json!({"id": "granted", "input": {"texts": ["x"]}, "options": {"priority": "interactive"}})).await;
        assert_eq!(v["ok"], true, "{v}");
        classes.insert("priority", "interactive refused without a grant, served with one".into());

        // 8. Limits, before any work, naming the key.
        let many: Vec<&str> = vec!["x"; 65];
        let cases = [
            ("minilm/embed", json!({"texts": many}), json!({}), "limits.max_texts"),
            ("minilm/embed", json!({"texts": ["z".repeat(5000)]}), json!({}), "limits.max_text_bytes"),
            ("tiny/generate", json!({"prompt": "p".repeat(20000)}), json!({}), "limits.max_prompt_bytes"),
            ("tiny/generate", json!({"prompt": "p"}), json!({"stop": ["a", "b", "c"]}), "limits.max_stop"),
            ("slow/infer", json!({"inputs": {"x": {"dtype": "float32", "shape": [1, 64], "data": vec![0.1; 64]},
                                             "iters": {"dtype": "int64", "shape": [600], "data": vec![1; 600]}}}), json!({}), "limits.max_tensor_bytes"),
        ];
        for (i, (topic, input, options, key)) in cases.into_iter().enumerate() {
            let v = ask(&c, &mut rx, &format!("inferd/n1/req/{topic}"), "r8/a", json!({"id": format!("limit-{i}"), "input": input, "options": options})).await;
            assert_eq!(code(&v), "invalid_input", "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains(key), "{key}: {v}");
        }
    });
    // Memory after the hostile classes (the long work below legitimately caches prompts).
    let rss_end = rss_of(d.pid());
    // ... and on D-Bus.
    let texts: Vec<String> = vec!["x".to_owned(); 65];
    let mut args = vec!["embed", "minilm"];
    args.extend(texts.iter().map(String::as_str));
    let err = assert_error(&inferctl(&d.bus, &args), "InvalidInput");
    assert!(err.contains("limits.max_texts"), "{err}");
    let long = "p".repeat(20000);
    let err = assert_error(
        &inferctl(&d.bus, &["generate", "tiny", &long]),
        "InvalidInput",
    );
    assert!(err.contains("limits.max_prompt_bytes"), "{err}");
    classes.insert("limits", "texts, text bytes, prompt bytes, stop strings, tensor bytes: invalid_input naming the key (MQTT and D-Bus)".into());

    // 9. Long legal work: a tensor run and a prompt each longer than WatchdogSec.
    let started = Instant::now();
    let x = format!("x=float32:1x64:{}", vec!["0.1"; 64].join(","));
    let slow = inferctl_spawn(
        &d.bus,
        &[
            "infer",
            "slow",
            "--input",
            &x,
            "--input",
            "iters=int64:1:3000000",
        ],
    );
    let prompt = "The kitchen light is on. ".repeat(300);
    let long_prompt = inferctl_spawn(
        &d.bus,
        &["generate", "smollm2", &prompt, "--max-tokens", "1"],
    );
    let slow = finish(slow);
    assert!(slow.status.success(), "{}", stderr(&slow));
    let long_prompt = finish(long_prompt);
    assert!(long_prompt.status.success(), "{}", stderr(&long_prompt));
    let long_work = started.elapsed();
    assert!(
        long_work > WATCHDOG,
        "the long requests took only {long_work:?}"
    );
    classes.insert(
        "long work",
        format!(
            "a 4.5 s tensor run and a 1,800-token prompt ({long_work:.1?}) with WatchdogSec = 3 s"
        ),
    );

    // 10. The prompt cache is per caller: another uid gets no cached tokens.
    let prompt = format!(
        "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "You are a helpful assistant in a quiet house. ".repeat(4)
    );
    let cached = |who: Option<u32>| {
        let mut cmd = match who {
            None => std::process::Command::new("busctl"),
            Some(uid) => as_user(uid, uid, &[], "busctl"),
        };
        let out = cmd
            .args([
                "--address",
                &d.bus,
                "--json=short",
                "call",
                "org.inferd.Inferd1",
                "/org/inferd/Inferd1",
                "org.inferd.Inferd1",
                "Complete",
                "ssa{sv}",
                "smollm2",
                &prompt,
                "1",
                "max_tokens",
                "u",
                "2",
            ])
            .output()
            .unwrap();
        json(&out)["data"][1]["cached_prompt_tokens"]["data"]
            .as_u64()
            .unwrap()
    };
    cached(None);
    assert!(cached(None) >= 32, "the same caller reuses its prompt");
    assert_eq!(
        cached(Some(65534)),
        0,
        "another uid was served from root's cache"
    );
    classes.insert("prompt cache", "reused by the same uid only".into());

    // The end: the honest client, the session, the watchdog, memory.
    *stop.lock().unwrap() = true;
    let h = rt.block_on(honest_task).unwrap();
    *reading.lock().unwrap() = false;
    let notify = reader.join().unwrap();
    assert!(
        notify.seen.iter().any(|(_, m)| m.contains("READY=1")),
        "no READY=1"
    );
    let published: Vec<(String, Value)> = std::iter::from_fn(|| seen.try_recv().ok())
        .map(|p| {
            (
                String::from_utf8_lossy(&p.topic).into_owned(),
                serde_json::from_slice(&p.payload).unwrap_or(Value::Null),
            )
        })
        .collect();
    let statuses: Vec<&Value> = published
        .iter()
        .filter(|(t, _)| t == "inferd/n1/status")
        .map(|(_, v)| v)
        .collect();
    let offline = statuses.iter().filter(|s| s["state"] != "online").count();
    // Replies (they carry "ok" or "done") on the forbidden topics that a '#' subscription sees.
    let to_forbidden: Vec<&(String, Value)> = published
        .iter()
        .filter(|(t, v)| {
            let forbidden = t.starts_with("inferd/") || t.len() == 300;
            forbidden
                && (v.get("ok").is_some() || v.get("done").is_some())
                && t != "inferd/n1/error"
        })
        .collect();
    let pings: Vec<Instant> = notify
        .seen
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    let max_gap = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let log = d.log();
    record(
        "R8 hostile clients",
        json!({"load": format!("an honest MQTT client, one embed every 200 ms, beside the hostile classes; \
                               inferd's session: {} statuses, {offline} offline; watchdog: {} pings, longest gap {max_gap:.1?} (WatchdogSec {WATCHDOG:?})",
                               statuses.len(), pings.len()),
               "faults": classes,
               "sent": h.sent, "answered": h.answered, "lost": h.sent - h.answered,
               "duplicates": "no answer went to another requester",
               "errors": {"wrong answers": h.wrong.len(), "replies on forbidden topics": to_forbidden.len(),
                          "overloaded (shared max_in_flight, during the flood)": h.overloaded},
               "rss": format!("{} MiB → {} MiB (bound +{} MiB)", rss_start >> 20, rss_end >> 20, RSS_BOUND >> 20)}),
    );
    assert!(
        h.wrong.is_empty(),
        "the honest client got wrong or no answers: {:?}",
        h.wrong
    );
    assert!(
        h.sent > 10 && h.answered == h.sent,
        "{} sent, {} answered",
        h.sent,
        h.answered
    );
    assert!(
        h.overloaded * 4 < h.sent,
        "{} of {} honest requests overloaded: the flood held max_in_flight too long",
        h.overloaded,
        h.sent
    );
    assert_eq!(offline, 0, "inferd's session dropped: {statuses:?}");
    assert!(
        to_forbidden.is_empty(),
        "published to forbidden topics: {to_forbidden:?}"
    );
    assert!(
        !statuses.is_empty()
            && statuses
                .iter()
                .all(|s| s["state"] == "online" && s["models"].is_array()),
        "a reply landed on the status topic: {statuses:?}"
    );
    assert!(
        max_gap < WATCHDOG,
        "the watchdog missed: a {max_gap:?} gap between pings"
    );
    assert!(
        !log.contains("connection failed"),
        "the MQTT connection dropped:\n{log}"
    );
    for i in 0..11 {
        assert!(
            log.contains(&format!("bad-reply-{i}")),
            "no log line for bad-reply-{i}"
        );
    }
    assert!(
        rss_end < rss_start + RSS_BOUND,
        "RSS grew from {rss_start} to {rss_end}"
    );
}

/// MQTT 3.1.1 has no way to tell the broker how large a packet inferd takes, so inferd takes any
/// the protocol allows: a request far over `max_payload` is answered `too_large` (on the node's
/// error topic: its `reply_to` is in the payload, which is not read), where it used to break the
/// connection and come back with every reconnect.
#[test]
fn r8_mqtt3_requests_of_any_size_are_answered() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let config = format!(
        "{}protocol = 3\nmax_payload = 16384\nmax_packet = 65536\n",
        broker.config("n1")
    );
    let d = Daemon::start_with(&bus, &repo, &config);
    broker.wait_online("n1");
    let errors = broker.subscribe("inferd/n1/error", 1);
    let replies = broker.subscribe("r8/v3", 2);
    let pad = "y".repeat(300_000);
    let huge = json!({"id": "huge", "input": {"texts": ["x"]}, "reply_to": "r8/v3", "pad": pad});
    broker.publish("inferd/n1/req/minilm/embed", &huge.to_string());
    let next = json!({"id": "next", "input": {"texts": ["x"]}, "reply_to": "r8/v3"});
    broker.publish("inferd/n1/req/minilm/embed", &next.to_string());
    // An answer over mqtt.max_packet (the broker's limit, which 3.1.1 cannot announce).
    let texts: Vec<String> = (0..64).map(|i| format!("sentence {i}")).collect();
    let big = json!({"id": "big", "input": {"texts": texts}, "reply_to": "r8/v3"});
    broker.publish("inferd/n1/req/minilm/embed", &big.to_string());
    let huge = errors.collect();
    assert_eq!(huge.len(), 1, "the huge request was not answered");
    assert_eq!(code(&huge[0]), "too_large", "{huge:?}");
    assert_eq!(huge[0]["topic"], "inferd/n1/req/minilm/embed");
    let got = replies.collect();
    assert!(
        got.iter().any(|v| v["id"] == "next" && v["ok"] == true),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|v| v["id"] == "big" && code(v) == "too_large"),
        "{got:?}"
    );
    assert!(!d.log().contains("connection failed"), "{}", d.log());
    assert_eq!(broker.wait_online("n1")["state"], "online");
}
