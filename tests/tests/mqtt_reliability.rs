//! MQTT when things go wrong: duplicate deliveries, cancel, a daemon killed (Last Will), a
//! broker restarted in the middle of 500 requests, a broker that hangs with answers owed, and
//! a pool of two daemons losing one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use inferd_e2e::broker::{json_of, props, v5_client, Publish5};
use inferd_e2e::*;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::json;

fn repo() -> Repo {
    let repo = Repo::new();
    repo.add_minilm("minilm");
    // The restart test sends 500 at once: room for all, however slow the machine.
    repo.set_queue("minilm", 1024);
    repo.add_endless_llm("tiny", "");
    repo
}

fn embed(id: &str, reply: &str) -> String {
    json!({"id": id, "input": {"texts": [format!("sentence {id}")]}, "reply_to": reply}).to_string()
}

#[test]
fn a_duplicate_runs_once_and_is_answered_for_both() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = repo();
    let d = Daemon::start_with(&bus, &repo, &broker.config("n1"));
    broker.wait_online("n1");
    let served = || d.models()["minilm"]["served"].as_u64().unwrap();
    let before = served();
    let sub = broker.subscribe("test/dup", 2);
    broker.publish("inferd/n1/req/minilm/embed", &embed("same", "test/dup"));
    broker.publish("inferd/n1/req/minilm/embed", &embed("same", "test/dup"));
    let replies = sub.collect();
    assert_eq!(replies.len(), 2, "answered for both deliveries");
    assert_eq!(replies[0], replies[1], "the same answer");
    assert_eq!(replies[0]["ok"], true);
    assert_eq!(served() - before, 1, "run once");
}

#[test]
fn cancel_ends_a_stream_and_status_follows_the_daemon() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = repo();
    let d = Daemon::start_with(&bus, &repo, &broker.config("n1"));
    let status = broker.wait_online("n1");
    let names: Vec<&str> = status["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["minilm", "tiny"]);
    assert!(status["models"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["state"] == "ready"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (c, mut rx) = v5_client(&broker, "test-cancel", "test/stream", false).await;
        let req = json!({"id": "long", "input": {"prompt": "Tell me a story."}, "options": {"max_tokens": 90000}, "stream": true});
        c.publish_with_properties("inferd/n1/req/tiny/generate", QoS::AtLeastOnce, false, req.to_string(), props("test/stream", "x", None))
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
        assert_eq!(json_of(&first)["seq"], 0);
        // Another requester (another reply topic) cannot cancel it, id or not...
        let stranger = json!({"id": "long", "reply_to": "test/stranger"}).to_string();
        c.publish("inferd/n1/cancel", QoS::AtLeastOnce, false, stranger).await.unwrap();
        c.publish("inferd/n1/cancel", QoS::AtLeastOnce, false, json!({"id": "long"}).to_string())
            .await
            .unwrap();
        // Had either cancel been taken, the stream would end within a step: five more pieces
        // after them, none the last, show it goes on.
        let mut later = Vec::new();
        for _ in 0..5 {
            let p = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
            later.push(json_of(&p));
        }
        assert!(later.iter().all(|v| v["done"] != true), "a stranger cancelled it: {later:?}");
        // ... its requester can (the cancel's Response Topic is the request's).
        let own = json!({"id": "long"}).to_string();
        c.publish_with_properties("inferd/n1/cancel", QoS::AtLeastOnce, false, own, props("test/stream", "c", None))
            .await
            .unwrap();
        let done = loop {
            let p = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
            let v = json_of(&p);
            if v["done"] == true {
                break v;
            }
        };
        assert_eq!(done["finish_reason"], "cancelled");
    });

    // Dropping the daemon SIGKILLs it: no goodbye, so the broker publishes the Last Will.
    drop(d);
    broker.wait_status("n1", "offline");
}

/// QoS 1 allows the network to deliver a reply twice (a broker that restarts before an
/// acknowledgement redelivers); what the daemon owes is one run and one answer per request.
/// So: every request answered, every copy of an answer identical, and each request run once.
/// Files an answer under its request's id; copies of one answer pile up under it.
fn record(answers: &mut HashMap<String, Vec<serde_json::Value>>, p: Publish5) {
    let v = json_of(&p);
    answers
        .entry(v["id"].as_str().unwrap().to_owned())
        .or_default()
        .push(v);
}

/// Requests `0..n` each answered, `ok`, every copy of an answer the same, after `runs` runs.
fn assert_each_answered_once(
    answers: &HashMap<String, Vec<serde_json::Value>>,
    n: usize,
    runs: u64,
) {
    let missing: Vec<usize> = (0..n)
        .filter(|i| !answers.contains_key(&i.to_string()))
        .collect();
    assert!(
        missing.is_empty(),
        "no answer for {} of {n} requests (inferd ran {runs}): {missing:?}",
        missing.len()
    );
    for (id, copies) in answers {
        assert_eq!(copies[0]["ok"], true, "{id}: {}", copies[0]);
        assert!(
            copies.iter().all(|c| *c == copies[0]),
            "{id}: different answers"
        );
    }
    assert_eq!(runs, n as u64, "each request ran exactly once");
}

/// A broker and a daemon on it, online, that lets a whole burst be in flight at once (all of it
/// may arrive at once after a restart).
fn for_a_burst() -> (Broker, Bus, Repo, Daemon) {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = repo();
    let config = format!("{}max_in_flight = 1000\n", broker.config("n1"));
    let d = Daemon::start_with(&bus, &repo, &config);
    broker.wait_online("n1");
    (broker, bus, repo, d)
}

#[test]
fn a_broker_restart_loses_no_request() {
    let (mut broker, _bus, _repo, d) = for_a_burst();
    let served_before = d.models()["minilm"]["served"].as_u64().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = 500;
    let answers = rt.block_on(async {
        let (_c, mut rx) = v5_client(&broker, "test-restart", "test/restart", true).await;
        let mut answers: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        // Each half acknowledged by the broker before the next step, so the requests in
        // flight are the broker's and inferd's, not the test client's.
        let half = |broker: &Broker, from: usize, to: usize| {
            broker.publish_lines(
                "inferd/n1/req/minilm/embed",
                Some("test/restart"),
                (from..to).map(|i| embed(&i.to_string(), "test/restart")),
            )
        };
        tokio::task::block_in_place(|| half(&broker, 0, n / 2));
        // Restart the broker once answers flow, with requests and answers in flight.
        let first = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        record(&mut answers, first.expect("no answer within 30 s").unwrap());
        tokio::task::block_in_place(|| {
            broker.restart();
            half(&broker, n / 2, n);
        });
        let deadline = Instant::now() + Duration::from_secs(180);
        while answers.len() < n && Instant::now() < deadline {
            if let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                record(&mut answers, p);
            }
        }
        // Late copies, to check they are copies.
        while let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            record(&mut answers, p);
        }
        answers
    });
    let runs = d.models()["minilm"]["served"].as_u64().unwrap() - served_before;
    assert_each_answered_once(&answers, n, runs);
    let copies: usize = answers.values().map(|c| c.len() - 1).sum();
    eprintln!("{n} requests, {n} runs, {copies} redelivered copies of answers (QoS 1)");
}

/// A broker that hangs stops acknowledging: inferd's answers pile up behind its window of
/// unacknowledged messages, and when the connection fails they are all still owed. After the
/// reconnect the broker hangs again for a moment, while they go out. rumqttc alone lost all
/// but one of those it sent then (see `frontend/mqtt/resend.rs`).
#[test]
fn answers_held_up_by_a_hung_broker_all_go_out_after_it_restarts() {
    let (mut broker, _bus, _repo, d) = for_a_burst();
    let served = || d.models()["minilm"]["served"].as_u64().unwrap();
    let served_before = served();
    let n = 300;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answers = rt.block_on(async {
        let (_c, mut rx) = v5_client(&broker, "test-hung", "test/hung", true).await;
        let mut answers: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        // Acknowledged by the broker before it hangs: the test's own client owes it nothing.
        tokio::task::block_in_place(|| {
            broker.publish_lines(
                "inferd/n1/req/minilm/embed",
                None,
                (0..n).map(|i| embed(&i.to_string(), "test/hung")),
            )
        });
        let first = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        record(&mut answers, first.expect("no answer within 30 s").unwrap());
        broker.pause();
        // inferd runs what it was sent; the answers wait for a broker that does not read.
        tokio::task::block_in_place(|| {
            let mut last = (served(), Instant::now());
            while last.1.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(200));
                let now = served();
                if now != last.0 {
                    last = (now, Instant::now());
                }
            }
            assert!(
                last.0 - served_before > 100,
                "only {} requests ran before the broker hung",
                last.0 - served_before
            );
            broker.restart();
            let reconnected = Instant::now() + Duration::from_secs(30);
            while d.log().matches("connected to the MQTT broker").count() < 2 {
                assert!(Instant::now() < reconnected, "inferd did not reconnect");
                std::thread::sleep(Duration::from_millis(2));
            }
            broker.pause();
            std::thread::sleep(Duration::from_secs(1));
            broker.resume();
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while answers.len() < n && Instant::now() < deadline {
            if let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                record(&mut answers, p);
            }
        }
        answers
    });
    assert_each_answered_once(&answers, n, served() - served_before);
}

#[test]
fn a_pool_spreads_requests_and_survives_losing_a_member() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = repo();
    let mut a = Daemon::start_with(&bus, &repo, &broker.config("a"));
    let bus_b = Bus::start();
    let mut b = Daemon::start_with(&bus_b, &repo, &broker.config("b"));
    broker.wait_online("a");
    broker.wait_online("b");
    let served = |d: &Daemon| d.models()["minilm"]["served"].as_u64().unwrap();
    let n = 40;
    let sub = broker.subscribe("test/pool", n);
    for i in 0..n {
        broker.publish(
            "inferd/pool/req/minilm/embed",
            &embed(&format!("p{i}"), "test/pool"),
        );
    }
    assert_eq!(sub.collect().len(), n);
    let (sa, sb) = (served(&a), served(&b));
    assert_eq!(sa + sb, n as u64, "each request ran once");
    assert!(sa > 0 && sb > 0, "spread over both: {sa} and {sb}");

    // Stop one member (SIGTERM: it leaves the pool, finishes what it took, goes offline); the
    // other serves everything sent meanwhile.
    let sub = broker.subscribe("test/pool2", n);
    for i in 0..n {
        broker.publish(
            "inferd/pool/req/minilm/embed",
            &embed(&format!("q{i}"), "test/pool2"),
        );
        if i == 5 {
            assert!(b.stop().success());
        }
    }
    let replies = sub.collect();
    assert_eq!(replies.len(), n, "no request lost");
    assert!(replies.iter().all(|r| r["ok"] == true), "{replies:?}");
    broker.wait_status("b", "offline");

    // b comes back on the session the broker kept (it left the pool when it stopped) and
    // rejoins the pool: with a gone, b answers every pool request.
    let b = Daemon::start_with(&bus_b, &repo, &broker.config("b"));
    broker.wait_online("b");
    assert!(a.stop().success(), "a leaves the pool as it stops");
    let sub = broker.subscribe("test/pool3", n);
    for i in 0..n {
        broker.publish(
            "inferd/pool/req/minilm/embed",
            &embed(&format!("r{i}"), "test/pool3"),
        );
    }
    let replies = sub.collect();
    assert_eq!(replies.len(), n, "the restarted member serves the pool");
    assert_eq!(served(&b), n as u64);
}
