//! Running it for months: health, request ids, metrics, idle unload and the memory budget,
//! end to end with the real daemon, real models and real clients.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use inferd_e2e::*;
use serde_json::Value;

fn embed_info(d: &Daemon, model: &str, text: &str) -> Value {
    busctl_json(
        &d.bus,
        "EmbedWithInfo",
        "sasa{sv}",
        &[model, "1", text, "0"],
    )
}

fn health(d: &Daemon) -> Value {
    let out = inferctl(&d.bus, &["--json", "health"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)))
}

fn wait_state(d: &Daemon, model: &str, state: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while d.models()[model]["state"] != state {
        assert!(
            Instant::now() < deadline,
            "{model} never became {state}: {}",
            d.models()[model]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Puts a top-level key in a model's manifest (before its tables).
fn manifest_key(repo: &Repo, model: &str, line: &str) {
    let path = repo.path().join(model).join("model.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{line}\n{text}")).unwrap();
}

#[test]
fn health_reports_models_and_every_request_has_an_id() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.write("broken", "model.onnx", b"not an onnx file");
    repo.write("broken", "model.toml", "kind = \"tensor\"\n");
    // A budget (far above need) makes loads take turns, so each one's memory is measured.
    let d = Daemon::start_with(
        &bus,
        &repo,
        "log_level = \"debug\"\n[engine]\nmemory_budget = 100000000000\n",
    );

    // A failed model makes the daemon degraded: inferctl says so and exits 2.
    let h = health(&d);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["uptime_s"].as_u64().is_some() && h["rss_bytes"].as_u64().unwrap() > 1 << 20);
    let models = h["models"].as_array().unwrap();
    let by = |n: &str| models.iter().find(|m| m["name"] == n).unwrap().clone();
    assert_eq!(by("minilm")["state"], "ready");
    assert_eq!(by("minilm")["provider"], "cpu");
    assert_eq!(by("minilm")["queue_depth"], 0);
    assert!(by("minilm")["memory_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(by("broken")["state"], "failed");
    let out = inferctl(&d.bus, &["health"]);
    assert_eq!(out.status.code(), Some(8), "degraded");
    assert!(stdout(&out).starts_with("degraded"), "{}", stdout(&out));
    // Health() over busctl is an a{sv} like the rest of the interface.
    let raw = busctl_json(&d.bus, "Health", "", &[]);
    assert_eq!(raw["data"][0]["status"]["data"], "degraded");

    // D-Bus requests get ids: in info, and in the message of every error.
    let info = &embed_info(&d, "minilm", "hello")["data"][1];
    let id = info_str(info, "request_id");
    assert!(id.starts_with('d'), "{info}");
    let long = "word ".repeat(2000);
    let out = busctl_call(
        &d.bus,
        "Embed",
        "sasa{sv}",
        &["minilm", "1", &long, "1", "truncate", "b", "false"],
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("(request d"), "{err}");
    let failed_id = err
        .split("(request ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .to_owned();
    assert_ne!(failed_id, id);
    // The model's last error names it, and so does the log.
    let last = health(&d)["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "minilm")
        .unwrap()["last_error"]
        .clone();
    assert!(
        last.as_str().unwrap().contains(&failed_id),
        "last_error {last} should name {failed_id}"
    );
    assert!(d.log().contains(&failed_id), "{}", d.log());
}

#[test]
fn metrics_on_a_loopback_port_and_a_unix_socket() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_llm("tiny-qwen2", "tiny", "");
    let port = free_port();
    let d = Daemon::start_with(
        &bus,
        &repo,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[engine]\nmemory_budget = 100000000000\n"
        ),
    );
    for _ in 0..3 {
        embed_info(&d, "minilm", "hello");
    }
    let _ = busctl_call(&d.bus, "Embed", "sasa{sv}", &["nosuch", "1", "x", "0"]);
    complete(&d, "tiny", "Hello", &["max_tokens", "u", "8"]);
    let text = scrape(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    let ok =
        "inferd_requests_total{model=\"minilm\",op=\"embed\",transport=\"dbus\",outcome=\"ok\"}";
    assert_eq!(sample(&text, ok), 3.0);
    // Names that are not models share one label, so typos cannot grow the series.
    let nf = "inferd_requests_total{model=\"unknown\",op=\"embed\",transport=\"dbus\",outcome=\"model_not_found\"}";
    assert_eq!(sample(&text, nf), 1.0);
    let gen =
        "inferd_requests_total{model=\"tiny\",op=\"generate\",transport=\"dbus\",outcome=\"ok\"}";
    assert_eq!(sample(&text, gen), 1.0);
    assert_eq!(
        sample(
            &text,
            "inferd_time_to_first_token_seconds_count{model=\"tiny\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "inferd_tokens_per_second_count{model=\"tiny\"}"),
        1.0
    );
    assert!(sample(&text, "inferd_batch_size_count{model=\"minilm\"}") >= 3.0);
    assert_eq!(
        sample(
            &text,
            "inferd_model_state{model=\"minilm\",state=\"ready\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "inferd_model_state{model=\"minilm\",state=\"failed\"}"
        ),
        0.0
    );
    assert_eq!(sample(&text, "inferd_queue_depth{model=\"minilm\"}"), 0.0);
    assert!(sample(&text, "inferd_model_load_seconds_count{model=\"minilm\"}") >= 1.0);
    assert!(sample(&text, "inferd_process_resident_memory_bytes") > 1e6);
    assert!(
        sample(
            &text,
            "inferd_model_memory_bytes{model=\"minilm\",pool=\"host\"}"
        ) > 1e6
    );
    assert_eq!(sample(&text, "inferd_mqtt_connected"), 0.0);
    // Anything but GET /metrics is refused.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /secrets HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    drop(d);

    // A unix socket instead of a port.
    let dir = shared_tempdir("inferd-metrics");
    let sock = dir.path().join("metrics.sock");
    let d = Daemon::start_with(
        &bus,
        &repo,
        &format!("[metrics]\nlisten = \"unix:{}\"\n", sock.display()),
    );
    embed_info(&d, "minilm", "hello");
    let text = scrape(std::os::unix::net::UnixStream::connect(&sock).unwrap());
    assert_eq!(sample(&text, ok), 1.0);
    drop(d);

    // Metrics are not for the network: a non-loopback address is refused at start.
    let mut d = Daemon::launch(
        &bus,
        &repo,
        Launch {
            config: "[metrics]\nlisten = \"0.0.0.0:9464\"\n",
            ..Default::default()
        },
    );
    assert!(!d.wait_exit(Duration::from_secs(20)).success());
    assert!(d.log().contains("not a loopback address"), "{}", d.log());
}

#[test]
fn keep_alive_unloads_an_idle_model_and_the_next_request_reloads_it() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    manifest_key(&repo, "minilm", "keep_alive_s = 1");
    let d = Daemon::start(&bus, &repo);
    let before = embed_info(&d, "minilm", "hello")["data"][0].clone();
    wait_state(&d, "minilm", "unloaded", Duration::from_secs(10));
    let m = &d.models()["minilm"];
    assert!(m["note"].as_str().unwrap().contains("keep_alive"), "{m}");
    // A rescan leaves it parked: nothing asked for it.
    let out = inferctl(&d.bus, &["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.models()["minilm"]["state"], "unloaded");
    // Requests arriving together wait for one reload and all get the same answer.
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let bus = d.bus.clone();
            std::thread::spawn(move || {
                busctl_json(
                    &bus,
                    "EmbedWithInfo",
                    "sasa{sv}",
                    &["minilm", "1", "hello", "0"],
                )
            })
        })
        .collect();
    for w in waiting {
        assert_eq!(w.join().unwrap()["data"][0], before);
    }
    assert_eq!(d.models()["minilm"]["state"], "ready");
}

/// A parked model wakes with the version it had: a manifest edited meanwhile waits for Reload,
/// and changed files make it say so instead of loading them. Wakes are rate-limited.
#[test]
fn a_parked_model_wakes_as_it_was_and_not_too_often() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    manifest_key(&repo, "minilm", "keep_alive_s = 1");
    let d = Daemon::start_with(&bus, &repo, "[engine]\nmin_wake_interval_ms = 3000\n");
    let mean = embed_info(&d, "minilm", "hello")["data"][0].clone();
    wait_state(&d, "minilm", "unloaded", Duration::from_secs(10));
    let toml = repo.path().join("minilm/model.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("pooling = \"mean\"", "pooling = \"cls\""),
    )
    .unwrap();
    let first_wake = Instant::now();
    assert_eq!(
        embed_info(&d, "minilm", "hello")["data"][0],
        mean,
        "a wake loaded the edited manifest"
    );
    wait_state(&d, "minilm", "unloaded", Duration::from_secs(10));
    // Woken again within min_wake_interval_ms: the request waits for it, then is answered.
    assert_eq!(embed_info(&d, "minilm", "hello")["data"][0], mean);
    assert!(
        first_wake.elapsed() >= Duration::from_millis(3000),
        "a second wake after {:?}",
        first_wake.elapsed()
    );
    wait_state(&d, "minilm", "unloaded", Duration::from_secs(10));
    // Files changed while parked are not loaded by a request...
    let tokenizer = std::fs::File::options()
        .write(true)
        .open(repo.path().join("minilm/tokenizer.json"))
        .unwrap();
    tokenizer
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    let out = busctl_call(&d.bus, "Embed", "sasa{sv}", &["minilm", "1", "hello", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("files changed") && err.contains("Reload"),
        "{err}"
    );
    // ... Reload loads them, with the edited manifest.
    let out = inferctl(&d.bus, &["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cls = embed_info(&d, "minilm", "hello")["data"][0].clone();
    assert_ne!(cls, mean, "Reload did not load the new version");
}

#[test]
fn the_memory_budget_unloads_the_least_recently_used_idle_model() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("a");
    // One model's measured size, to size the budget for one and a half.
    let d = Daemon::start(&bus, &repo);
    let one = d.models()["a"]["memory_bytes"].as_u64().unwrap();
    assert!(one > 10 << 20, "minilm took {one} bytes?");
    drop(d);

    repo.add_minilm("b");
    let budget = one * 3 / 2;
    let config = format!("[engine]\nmemory_budget = {budget}\n");
    let d = Daemon::start_with(&bus, &repo, &config);
    let ready = |d: &Daemon| -> Vec<String> {
        let m = d.models();
        ["a", "b"]
            .into_iter()
            .filter(|n| m[*n]["state"] == "ready")
            .map(str::to_owned)
            .collect()
    };
    wait_until(|| ready(&d).len() == 1);
    // Whichever is parked comes back on request, and the other one makes room.
    let parked = if ready(&d) == ["a"] { "b" } else { "a" };
    let other = if parked == "a" { "b" } else { "a" };
    assert!(d.models()[parked]["note"]
        .as_str()
        .unwrap()
        .contains("memory budget"));
    embed_info(&d, parked, "hello");
    assert_eq!(ready(&d), [parked]);
    assert_eq!(d.models()[other]["state"], "unloaded");
    drop(d);

    // A budget no model fits: a clear load error, not a crash.
    let d = Daemon::start_with(&bus, &repo, "[engine]\nmemory_budget = 1048576\n");
    let m = d.models();
    assert_eq!(m["a"]["state"], "failed");
    let e = m["a"]["error"].as_str().unwrap();
    assert!(
        e.contains("memory budget") && e.contains("engine.memory_budget is 1 MiB"),
        "{e}"
    );
    let out = busctl_call(&d.bus, "Embed", "sasa{sv}", &["a", "1", "x", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory budget"));
}

/// GPU memory without a GPU: `INFERD_SIMULATE_TENSORRT` puts `g1` and `g2` on a simulated
/// TensorRT device 0 (their sessions run on the CPU, and the simulated device's memory in use is
/// the process's RSS); `c` is a CPU model. Each pool has its own budget.
#[test]
fn each_gpu_and_the_host_have_their_own_budget() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm_on("g1", r#"["tensorrt"]"#);
    repo.add_minilm_on("g2", r#"["tensorrt"]"#);
    repo.add_minilm("c");
    let start = |config: &str| {
        let d = simulated_gpu(&bus, &repo, config, "slow:10");
        d.wait_settled();
        d
    };
    // Sizes, measured with a budget far above need (loads take turns).
    let d = start("[engine]\nmemory_budget = 100000000000\n");
    let m = d.models();
    assert_eq!(m["g1"]["memory_pool"], "gpu:0", "{}", m["g1"]);
    assert_eq!(m["c"]["memory_pool"], "host", "{}", m["c"]);
    let one = m["g1"]["memory_bytes"].as_u64().unwrap();
    assert!(one > 10 << 20, "g1 took {one} bytes?");
    drop(d);

    // memory_budget applies to each pool on its own: room for one model per pool, so one of
    // the two GPU models is parked and the CPU model stays.
    let budget = one * 3 / 2;
    let d = start(&format!("[engine]\nmemory_budget = {budget}\n"));
    let m = d.models();
    let ready: Vec<&str> = ["g1", "g2"]
        .into_iter()
        .filter(|n| m[*n]["state"] == "ready")
        .collect();
    assert_eq!(ready.len(), 1, "{m}");
    assert_eq!(m["c"]["state"], "ready", "{m}");
    let h = health(&d);
    let gpu = memory_pool(&h, "gpu:0");
    assert_eq!(gpu["budget_bytes"], budget, "{h}");
    assert!(gpu["models_bytes"].as_u64().unwrap() <= budget);
    assert_eq!(gpu["estimated"], 0, "{h}");
    assert_eq!(memory_pool(&h, "host")["budget_bytes"], budget, "{h}");
    // The parked one comes back on request and takes the other's place on the GPU.
    let parked = if ready == ["g1"] { "g2" } else { "g1" };
    embed_info(&d, parked, "hello");
    let m = d.models();
    assert_eq!(m[parked]["state"], "ready");
    assert_eq!(m[ready[0]]["state"], "unloaded");
    assert_eq!(m["c"]["state"], "ready");
    drop(d);

    // gpu_memory_budget overrides it for GPUs; a model that cannot fit fails plainly.
    let d = start("[engine]\ngpu_memory_budget = 1048576\n");
    let m = d.models();
    assert_eq!(m["c"]["state"], "ready", "{m}");
    let e = m["g1"]["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("of GPU 0 memory; engine.gpu_memory_budget is 1 MiB"),
        "{e}"
    );
}

/// A TensorRT engine build moves a model from the host to the GPU pool. The build overlaps
/// another load here, so its size is estimated from its files instead of measured.
#[test]
fn an_engine_build_moves_the_model_to_its_gpu() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm_on("t", r#"["tensorrt", "cpu"]"#);
    let d = simulated_gpu(
        &bus,
        &repo,
        "[engine]\nmemory_budget = 100000000000\n",
        "slow:4000",
    );
    d.wait_settled();
    let m = &d.models()["t"];
    assert_eq!(
        (m["provider"].as_str(), m["memory_pool"].as_str()),
        (Some("cpu"), Some("host")),
        "{m}"
    );
    assert!(m["engine_build_s"].is_u64(), "{m}");
    // Another model loads while the engine builds.
    repo.add_minilm("other");
    let out = inferctl(&d.bus, &["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(|| d.models()["t"]["provider"] == "tensorrt");
    let m = &d.models()["t"];
    assert_eq!(m["memory_pool"], "gpu:0", "{m}");
    let h = health(&d);
    let gpu = memory_pool(&h, "gpu:0");
    let files = std::fs::metadata(repo.path().join("t/model.onnx"))
        .unwrap()
        .len();
    assert!(m["memory_bytes"].is_null(), "{m}");
    assert_eq!(gpu["estimated"], 1, "{h}");
    assert_eq!(gpu["models_bytes"], files, "{h}");
}

/// `Health()`'s entry for one memory pool.
fn memory_pool(h: &Value, name: &str) -> Value {
    h["memory"]
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["pool"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} pool: {h}"))
}

fn simulated_gpu(bus: &Bus, repo: &Repo, config: &str, simulate: &str) -> Daemon {
    Daemon::launch(
        bus,
        repo,
        Launch {
            config,
            env: &[("INFERD_SIMULATE_TENSORRT", simulate)],
            ..Default::default()
        },
    )
}

fn wait_until(ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}
