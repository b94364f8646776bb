//! The reliability suite (R1, R2, R5, R6): faults and load against the real daemon. `make test`
//! runs each at a short size; `make reliability` (INFERD_RELIABILITY=full) at the sizes in
//! docs/reliability.md, which also records their results.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferd_client::stream::{Input, Stream, StreamEvent};
use inferd_client::Inferd1Proxy;
use inferd_e2e::broker::{json_of, props, v5_client};
use inferd_e2e::*;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};
use zbus::zvariant::Value as ZValue;

/// These tests measure: one at a time, even when cargo runs a binary's tests in parallel.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client connection of its own to the test bus.
async fn connect(addr: &str) -> zbus::Connection {
    zbus::connection::Builder::address(addr)
        .unwrap()
        .build()
        .await
        .unwrap()
}

async fn proxy(addr: &str) -> Inferd1Proxy<'static> {
    Inferd1Proxy::new(&connect(addr).await).await.unwrap()
}

fn mib(b: u64) -> String {
    format!("{} MiB", b >> 20)
}

/// R1: QoS 1 requests at a steady rate while mosquitto is killed (SIGKILL) and restarted three
/// times. Every request must be answered, and run exactly once.
///
/// A broker killed between acknowledging a message and writing it down loses it, whatever its
/// clients do; so the client does what a client that must not lose work does: it sends again,
/// with the same id, what has had no answer for a while. inferd runs a repeated id once and
/// answers it again, which is what makes the whole exactly-once.
#[test]
fn r1_broker_crashes_lose_no_request() {
    let _serial = serial();
    let (n, rate) = if full_scale() {
        (10_000, 250.0)
    } else {
        (1_000, 250.0)
    };
    let mut broker = Broker::durable();
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    // What queued at the broker while it was down arrives at once: let it all be in flight.
    let config = format!("{}max_in_flight = 4096\n", broker.config("n1"));
    let d = Daemon::start_with(&bus, &repo, &config);
    broker.wait_online("n1");
    let served_before = d.models()["minilm"]["served"].as_u64().unwrap();
    let rss_start = rss_of(d.pid());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answers = rt.block_on(async {
        let (c, mut rx) = v5_client(&broker, "r1", "r1/replies", true).await;
        let answers: Arc<std::sync::Mutex<HashMap<String, Vec<Value>>>> = Default::default();
        let sink = answers.clone();
        let collector = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                let v = json_of(&p);
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                sink.lock().unwrap().entry(id).or_default().push(v);
            }
        });
        let send = |i: usize| {
            let c = c.clone();
            async move {
                let body =
                    json!({"id": i.to_string(), "input": {"texts": [format!("sentence {i}")]}});
                c.publish_with_properties(
                    "inferd/n1/req/minilm/embed",
                    QoS::AtLeastOnce,
                    false,
                    body.to_string(),
                    props("r1/replies", "r", None),
                )
                .await
                .unwrap();
            }
        };
        let gap = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        for i in 0..n {
            // Steady: each request at its slot, whatever the broker is doing.
            tokio::time::sleep_until((start + gap * i as u32).into()).await;
            send(i).await;
            if i > 0 && i % (n / 4) == 0 {
                tokio::task::block_in_place(|| broker.crash_and_restart());
            }
        }
        let mut resent = 0;
        for _round in 0..5 {
            let quiet = Instant::now() + Duration::from_secs(15);
            while answers.lock().unwrap().len() < n && Instant::now() < quiet {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let missing: Vec<usize> = {
                let a = answers.lock().unwrap();
                (0..n).filter(|i| !a.contains_key(&i.to_string())).collect()
            };
            if missing.is_empty() {
                break;
            }
            resent += missing.len();
            for i in missing {
                send(i).await;
            }
        }
        // Late copies, to count them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        collector.abort();
        let a = answers.lock().unwrap().clone();
        (a, resent)
    });
    let (answers, resent) = answers;
    let lost = (0..n)
        .filter(|i| !answers.contains_key(&i.to_string()))
        .count();
    let duplicates: usize = answers.values().map(|c| c.len() - 1).sum();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for copies in answers.values() {
        if copies[0]["ok"] != true {
            *errors
                .entry(
                    copies[0]["error"]["code"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned(),
                )
                .or_default() += 1;
        }
        assert!(copies.iter().all(|c| *c == copies[0]), "copies differ");
    }
    let runs = d.models()["minilm"]["served"].as_u64().unwrap() - served_before;
    let rss_end = rss_of(d.pid());
    record(
        "R1 broker faults",
        json!({"load": format!("{n} QoS 1 embed requests at {rate}/s"),
               "faults": "mosquitto SIGKILLed and restarted 3 times",
               "sent": n, "answered": answers.len(), "lost": lost,
               "duplicates": format!("{duplicates} copies of answers; {runs} runs; {resent} sent again after 15 s without an answer"),
               "errors": errors, "rss": format!("{} → {}", mib(rss_start), mib(rss_end))}),
    );
    assert_eq!(lost, 0, "requests without an answer");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(runs, n as u64, "each request ran exactly once");
}

fn load_repo(queue: usize) -> Repo {
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_llm("intent", "intent", "");
    repo.add_llm("tiny-qwen2", "tiny", "");
    for m in ["minilm", "intent", "tiny"] {
        repo.set_queue(m, queue);
    }
    repo
}

/// One request of the mix: embed, classify or an 8-token generation.
async fn mixed(proxy: &Inferd1Proxy<'_>, i: usize) -> (usize, Result<(), inferd_client::Error>) {
    let op = i % 3;
    let r = match op {
        0 => proxy
            .embed("minilm", &["a sentence to embed"], HashMap::new())
            .await
            .map(drop),
        1 => proxy
            .classify("intent", &["turn on the lights"], HashMap::new())
            .await
            .map(drop),
        _ => proxy
            .complete(
                "tiny",
                "Hello",
                HashMap::from([("max_tokens", ZValue::U32(8))]),
            )
            .await
            .map(drop),
    };
    (op, r)
}

/// R2: concurrent D-Bus clients sending a mix; no error within capacity, only `Overloaded`
/// beyond it, and RSS flat after warm-up.
#[test]
fn r2_many_clients_mixed_load() {
    let _serial = serial();
    let (clients, total) = if full_scale() {
        (200, 10_000)
    } else {
        (50, 1_000)
    };
    let bus = Bus::start();
    let d = Daemon::start(&bus, &load_repo(clients + 8));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = |total: usize| {
        rt.block_on(async {
            let mut tasks = Vec::new();
            for c in 0..clients {
                let addr = d.bus.clone();
                tasks.push(tokio::spawn(async move {
                    let proxy = proxy(&addr).await;
                    let mut out = Vec::new();
                    for i in (c..total).step_by(clients) {
                        let t = Instant::now();
                        let (op, r) = mixed(&proxy, i).await;
                        out.push((op, t.elapsed().as_secs_f64() * 1e3, r.err()));
                    }
                    out
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        })
    };
    run(clients * 3); // warm-up
    let rss_warm = rss_of(d.pid());
    let started = Instant::now();
    let results = run(total);
    let secs = started.elapsed().as_secs_f64();
    let rss_end = rss_of(d.pid());
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut latency: [Vec<f64>; 3] = Default::default();
    for (op, ms, e) in &results {
        latency[*op].push(*ms);
        if let Some(e) = e {
            if !errors.contains_key(&e.short_name()) {
                eprintln!("first {}: {}", e.short_name(), e.message());
            }
            *errors.entry(e.short_name().to_owned()).or_default() += 1;
        }
    }
    let p = |op: usize, q: f64| percentile(&mut latency[op].clone(), q);
    let growth = rss_end as f64 / rss_warm as f64 - 1.0;

    // Deliberately over capacity: every client at once at a slow model with a queue of 2.
    let slow = Repo::new();
    slow.add_test_model(
        "slow",
        "slow",
        "kind = \"tensor\"\n[batching]\nmax_batch = 1\nqueue = 2\n",
    );
    let over_bus = Bus::start();
    let over = Daemon::start(&over_bus, &slow);
    let over_results = rt.block_on(async {
        let mut tasks = Vec::new();
        // Connected first, then all at once.
        let gate = Arc::new(tokio::sync::Barrier::new(clients));
        for _ in 0..clients {
            let addr = over.bus.clone();
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let proxy = proxy(&addr).await;
                gate.wait().await;
                slow_infer(&proxy)
                    .await
                    .err()
                    .map(|e| e.short_name().to_owned())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let refused = over_results.iter().flatten().count();
    record(
        "R2 load",
        json!({"load": format!("{clients} D-Bus clients, {total} mixed requests (embed, classify, 8-token generate), {:.0} req/s", total as f64 / secs),
               "faults": format!("then {clients} at once at a slow model with a queue of 2: {refused} Overloaded"),
               "sent": total, "answered": results.len(), "lost": 0, "duplicates": 0,
               "errors": errors,
               "latency_ms": {"embed": [p(0, 50.0), p(0, 99.0)], "classify": [p(1, 50.0), p(1, 99.0)], "generate": [p(2, 50.0), p(2, 99.0)]},
               "rss": format!("{} → {} after warm-up ({:+.1}%)", mib(rss_warm), mib(rss_end), growth * 100.0)}),
    );
    assert_eq!(results.len(), total);
    assert!(errors.is_empty(), "errors within capacity: {errors:?}");

    assert!(
        refused > 0,
        "a queue of 2 never refused {clients} concurrent requests"
    );
    assert!(
        over_results.iter().flatten().all(|e| e == "Overloaded"),
        "{over_results:?}"
    );
    // Short runs (make test) check a loose bound that only a leak crosses.
    let bound = if full_scale() { 0.05 } else { 0.5 };
    assert!(
        growth < bound,
        "RSS grew {:.1}% after warm-up",
        growth * 100.0
    );
}

/// R5: streaming generations whose client disconnects mid-stream: every sequence is freed,
/// and neither active sequences nor RSS grow.
#[test]
fn r5_vanishing_streaming_clients() {
    let _serial = serial();
    let n = if full_scale() { 1_000 } else { 60 };
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_endless_llm("tiny", "");
    let d = Daemon::start(&bus, &repo);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wave = 10;
    let mut rss_after_first = 0;
    let mut slowest_free = Duration::ZERO;
    for w in 0..n / wave {
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..wave {
                let addr = d.bus.clone();
                tasks.push(tokio::spawn(async move {
                    let conn = connect(&addr).await;
                    let opts = HashMap::from([("max_tokens", ZValue::U32(90_000))]);
                    let mut s =
                        Stream::start(&conn, "tiny", Input::Prompt("Tell me a story"), opts)
                            .await
                            .unwrap();
                    // The first piece of text, then the client vanishes.
                    let first = s.next().await;
                    assert!(
                        matches!(first, Some(StreamEvent::Delta { .. })),
                        "the stream ended before the client left: {first:?}"
                    );
                    drop(s);
                    drop(conn);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let left = Instant::now();
        while d.models()["tiny"]["active"] != 0 {
            assert!(
                left.elapsed() < Duration::from_secs(10),
                "sequences not freed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        slowest_free = slowest_free.max(left.elapsed());
        if w == 0 {
            rss_after_first = rss_of(d.pid());
        }
    }
    let rss_end = rss_of(d.pid());
    let growth = rss_end as f64 / rss_after_first as f64 - 1.0;
    record(
        "R5 vanishing clients",
        json!({"load": format!("{n} streaming generations, {wave} at a time"),
               "faults": "each client disconnects after its first piece of text",
               "sent": n, "answered": "-", "lost": 0, "duplicates": 0, "errors": {},
               "freed": format!("active = 0 at most {} ms after a wave left", slowest_free.as_millis()),
               "rss": format!("{} → {} ({:+.1}%)", mib(rss_after_first), mib(rss_end), growth * 100.0)}),
    );
    // Short runs (make test) check a loose bound that only a leak crosses: their RSS is still
    // settling after the first wave.
    let bound = if full_scale() { 0.05 } else { 0.5 };
    assert!(growth < bound, "RSS grew {:.1}%", growth * 100.0);
}

/// One request to the `slow` test model (a loop of 20,000 iterations).
async fn slow_infer(proxy: &Inferd1Proxy<'_>) -> Result<(), inferd_client::Error> {
    let x: inferd_client::WireTensor = (
        "float32".into(),
        vec![1, 64],
        [0.1f32; 64].iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let iters: inferd_client::WireTensor =
        ("int64".into(), vec![1], 20_000i64.to_le_bytes().to_vec());
    let inputs = HashMap::from([("x".to_owned(), x), ("iters".to_owned(), iters)]);
    proxy.infer("slow", inputs).await.map(drop)
}

/// R6: SIGTERM under load. Every request the daemon accepted is answered; the ones that
/// arrive while it drains are told `ShuttingDown`. Nothing ends without an answer.
#[test]
fn r6_sigterm_under_load_answers_everything_it_accepted() {
    let _serial = serial();
    let n = if full_scale() { 400 } else { 100 };
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("probe");
    repo.add_test_model(
        "slow",
        "slow",
        &format!("kind = \"tensor\"\n[batching]\nmax_batch = 1\nqueue = {n}\n"),
    );
    let mut d = Daemon::start(&bus, &repo);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outcomes = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..n {
            let addr = d.bus.clone();
            let sent = sent.clone();
            tasks.push(tokio::spawn(async move {
                // Spread over a second, so some arrive after SIGTERM.
                tokio::time::sleep(Duration::from_millis((i * 1000 / n) as u64)).await;
                let proxy = proxy(&addr).await;
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match slow_infer(&proxy).await {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.short_name().to_owned(),
                }
            }));
        }
        // SIGTERM with 40% of the requests sent, the rest still to come.
        while sent.load(std::sync::atomic::Ordering::Relaxed) < n * 2 / 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        d.signal(nix::sys::signal::Signal::SIGTERM);
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let status = d.wait_exit(Duration::from_secs(60));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        *counts.entry(o.clone()).or_default() += 1;
    }
    record(
        "R6 SIGTERM under load",
        json!({"load": format!("{n} Infer requests on a slow model (one at a time) over 1 s"),
               "faults": "SIGTERM once 40% are sent", "sent": n,
               "answered": counts.get("ok").copied().unwrap_or(0), "lost": 0, "duplicates": 0,
               "errors": counts.iter().filter(|(k, _)| *k != "ok").collect::<BTreeMap<_, _>>(),
               "rss": "-"}),
    );
    assert!(status.success(), "inferd exited {status:?}");
    // Answered, refused while draining, or never reached a daemon that had left the bus.
    let allowed = ["ok", "ShuttingDown", "ZBus"];
    assert!(
        outcomes.iter().all(|o| allowed.contains(&o.as_str())),
        "{counts:?}"
    );
    assert!(counts.get("ok").is_some_and(|&k| k > 0), "{counts:?}");
    assert!(counts.contains_key("ShuttingDown"), "{counts:?}");
}

/// Soak: mixed D-Bus load (8 clients) and a steady MQTT stream for `INFERD_SOAK_SECS` (default
/// 120; `make soak DURATION=3600`). Reports RSS and latency drift between the first and the
/// last window; fails on any error and on RSS growth past 10% after the first window. Minutes
/// long, so `make soak` runs it, not `make test`.
#[test]
#[ignore = "minutes long: `make soak` runs it"]
fn soak_mixed_load_without_drift() {
    let _serial = serial();
    let secs: u64 = std::env::var("INFERD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let broker = Broker::start();
    let bus = Bus::start();
    let d = Daemon::start_with(&bus, &load_repo(64), &broker.config("n1"));
    broker.wait_online("n1");
    let windows = 6usize;
    let window = Duration::from_secs(secs) / windows as u32;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (samples, mqtt_sent, mqtt_answered) = rt.block_on(async {
        let stop = Instant::now() + Duration::from_secs(secs);
        let (c, mut rx) = v5_client(&broker, "soak", "soak/replies", true).await;
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = answered.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if json_of(&p)["ok"] == true {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let mqtt = tokio::spawn(async move {
            let mut sent = 0usize;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while Instant::now() < stop {
                tick.tick().await;
                let body =
                    json!({"id": format!("s{sent}"), "input": {"texts": ["a sensor reading"]}});
                c.publish_with_properties(
                    "inferd/n1/req/intent/classify",
                    QoS::AtLeastOnce,
                    false,
                    body.to_string(),
                    props("soak/replies", "s", None),
                )
                .await
                .unwrap();
                sent += 1;
            }
            sent
        });
        let started = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..8 {
            let addr = d.bus.clone();
            tasks.push(tokio::spawn(async move {
                let proxy = proxy(&addr).await;
                let mut out = Vec::new();
                let mut i = k;
                while Instant::now() < stop {
                    let t = Instant::now();
                    let (_, r) = mixed(&proxy, i).await;
                    let w = (started.elapsed().as_secs_f64() / window.as_secs_f64()) as usize;
                    out.push((w.min(windows - 1), t.elapsed().as_secs_f64() * 1e3, r.err()));
                    i += 8;
                }
                out
            }));
        }
        let pid = d.pid();
        let sampler = tokio::spawn(async move {
            let mut rss = Vec::new();
            for _ in 0..windows {
                tokio::time::sleep(window).await;
                rss.push(rss_of(pid));
            }
            rss
        });
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let sent = mqtt.await.unwrap();
        let rss = sampler.await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        (
            (all, rss),
            sent,
            answered.load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    let (results, rss) = samples;
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.2.as_ref().map(|e| e.short_name().to_owned()))
        .collect();
    let mut by_window: Vec<Vec<f64>> = vec![Vec::new(); windows];
    for (w, ms, _) in &results {
        by_window[*w].push(*ms);
    }
    let p50: Vec<f64> = by_window.iter_mut().map(|v| percentile(v, 50.0)).collect();
    let p99: Vec<f64> = by_window.iter_mut().map(|v| percentile(v, 99.0)).collect();
    let (rss_first, rss_last) = (rss[0], *rss.last().unwrap());
    let growth = rss_last as f64 / rss_first as f64 - 1.0;
    record(
        "Soak",
        json!({"load": format!("{secs} s: 8 D-Bus clients (embed, classify, 8-token generate) + 20 MQTT classify/s"),
               "faults": "-", "sent": results.len() + mqtt_sent,
               "answered": results.len() - errors.len() + mqtt_answered,
               "lost": mqtt_sent - mqtt_answered, "duplicates": 0,
               "errors": errors.len(),
               "latency_ms_p50_by_window": p50, "latency_ms_p99_by_window": p99,
               "rss_by_window": rss.iter().map(|b| b >> 20).collect::<Vec<_>>(),
               "rss": format!("{} → {} ({:+.1}% after the first window)", mib(rss_first), mib(rss_last), growth * 100.0)}),
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(mqtt_answered, mqtt_sent, "MQTT requests without an answer");
    assert!(growth < 0.10, "RSS grew {:.1}%: {rss:?}", growth * 100.0);
}
