//! The TensorRT engine lifecycle without a GPU: `INFERD_SIMULATE_TENSORRT` makes the TensorRT
//! provider "register" with a build that takes a chosen time (`slow:MS`) or fails (`fail`); the
//! session itself runs on the CPU. Everything around it is real: the engine cache folders and
//! keys, serving on the next provider while the engine builds, the switch, and the status on
//! D-Bus, MQTT and the systemd notify socket.

use std::path::Path;
use std::time::{Duration, Instant};

use inferd_e2e::notify::field;
use inferd_e2e::*;
use nix::sys::signal::Signal;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// minilm with TensorRT first, then the CPU.
fn add_trt_minilm(repo: &Repo, extra: &str) {
    repo.add_minilm_on("minilm", r#"["tensorrt", "cpu"]"#);
    let path = repo.path().join("minilm/model.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(path, format!("{toml}\n[execution.tensorrt]\n{extra}\n")).unwrap();
}

fn launch(
    bus: &Bus,
    repo: &Repo,
    state: &Path,
    sim: &str,
    env: &[(&str, &str)],
    config: &str,
) -> Daemon {
    let mut all = vec![("INFERD_SIMULATE_TENSORRT", sim)];
    all.extend_from_slice(env);
    Daemon::launch(
        bus,
        repo,
        Launch {
            config,
            env: &all,
            state_dir: Some(state),
            ..Default::default()
        },
    )
}

/// Polls `ListModels` until `pred` holds for the model.
fn wait_model(d: &Daemon, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = inferctl(&d.bus, &["--json", "models"]);
        if out.status.success() {
            let list: Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(m) = list
                .as_array()
                .and_then(|a| a.iter().find(|m| m["name"] == "minilm"))
            {
                if pred(m) {
                    return m.clone();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "minilm never got there; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Engine folders of minilm: published keys, and builds in progress.
fn engine_dirs(state: &Path) -> (Vec<String>, Vec<String>) {
    let root = state.join("tensorrt/minilm");
    let mut keys = Vec::new();
    let mut builds = Vec::new();
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".build-") {
            builds.push(name);
        } else if e.path().is_dir() {
            keys.push(name);
        }
    }
    (keys, builds)
}

fn embed(d: &Daemon) -> Value {
    let out = inferctl(&d.bus, &["--json", "embed", "minilm", "an engine cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)
}

#[test]
fn serves_on_the_next_provider_while_the_engine_builds_then_switches() {
    let bus = Bus::start();
    let repo = Repo::new();
    add_trt_minilm(&repo, "fp16 = true");
    let state = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let mut notify = NotifySocket::new();
    let d = launch(
        &bus,
        &repo,
        state.path(),
        "slow:4000",
        &[("NOTIFY_SOCKET", notify.path())],
        &broker.config("trt"),
    );

    let building = wait_model(&d, |m| m["state"] == "ready");
    assert_eq!(building["provider"], "cpu", "{building}");
    assert!(building["engine_build_s"].is_u64(), "{building}");
    let table = stdout(&inferctl(&d.bus, &["models"]));
    assert!(
        table.contains("cpu → tensorrt (building engine, "),
        "{table}"
    );
    let during = embed(&d);
    let status = notify.wait_for(WAIT, |m| {
        field(m, "STATUS").is_some_and(|s| s.contains("minilm: building TensorRT engine"))
    });
    assert!(status.contains("serving 1 model"), "{status}");
    let mqtt = broker.wait_online("trt");
    assert!(
        mqtt["models"][0]["engine_build_s"].is_u64() || mqtt["models"][0]["provider"] == "tensorrt",
        "{mqtt}"
    );

    let built = wait_model(&d, |m| m["provider"] == "tensorrt");
    assert!(built.get("engine_build_s").is_none(), "{built}");
    assert_eq!(built["state"], "ready");
    assert_eq!(embed(&d), during, "the same model answers the same");
    let (keys, builds) = engine_dirs(state.path());
    assert_eq!((keys.len(), builds.len()), (1, 0), "{keys:?} {builds:?}");
    let key_txt = std::fs::read_to_string(
        state
            .path()
            .join("tensorrt/minilm")
            .join(&keys[0])
            .join("key.txt"),
    )
    .unwrap();
    for part in [
        "model_sha256 = ",
        "onnxruntime = 1.",
        "gpu = simulated GPU",
        "precision = fp16",
    ] {
        assert!(key_txt.contains(part), "{part}: {key_txt}");
    }
    let online = broker.wait_online("trt");
    assert_eq!(online["models"][0]["provider"], "tensorrt", "{online}");
    drop(d);

    // A restart finds the engine: straight onto TensorRT, no build.
    let d = launch(&bus, &repo, state.path(), "slow:4000", &[], "");
    let m = wait_model(&d, |m| m["state"] == "ready");
    assert_eq!(m["provider"], "tensorrt", "{m}");
    assert!(d.log().contains("TensorRT engine cache hit"));

    // A different precision is a different engine: built anew, and the old one removed.
    let toml = repo.path().join("minilm/model.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("fp16 = true", "fp16 = false");
    std::fs::write(&toml, text).unwrap();
    d.signal(Signal::SIGHUP);
    wait_model(&d, |m| m["engine_build_s"].is_u64());
    let rebuilt = wait_model(&d, |m| {
        m["provider"] == "tensorrt" && m.get("engine_build_s").is_none()
    });
    assert_eq!(rebuilt["state"], "ready");
    let (new_keys, builds) = engine_dirs(state.path());
    assert_eq!(new_keys.len(), 1, "{new_keys:?}");
    assert_ne!(new_keys, keys, "fp32 must not reuse the fp16 engine");
    assert!(builds.is_empty(), "{builds:?}");
}

#[test]
fn a_failed_build_keeps_the_next_provider_serving_and_says_why() {
    let bus = Bus::start();
    let repo = Repo::new();
    add_trt_minilm(&repo, "");
    let state = tempfile::tempdir().unwrap();
    let d = launch(&bus, &repo, state.path(), "fail", &[], "");
    let m = wait_model(&d, |m| {
        m["note"]
            .as_str()
            .is_some_and(|n| n.contains("engine build failed"))
    });
    assert_eq!(
        (m["state"].as_str(), m["provider"].as_str()),
        (Some("ready"), Some("cpu")),
        "{m}"
    );
    assert!(
        m["note"]
            .as_str()
            .unwrap()
            .contains("simulated TensorRT failure"),
        "{m}"
    );
    embed(&d);
    let (keys, builds) = engine_dirs(state.path());
    assert!(keys.is_empty() && builds.is_empty(), "{keys:?} {builds:?}");
    let e = assert_error(&inferctl(&d.bus, &["warmup", "minilm"]), "ModelNotReady");
    assert!(
        e.contains("engine build failed") && e.contains("serves on cpu"),
        "{e}"
    );
}

#[test]
fn warmup_returns_once_the_engine_is_built() {
    let bus = Bus::start();
    let repo = Repo::new();
    add_trt_minilm(&repo, "");
    let state = tempfile::tempdir().unwrap();
    let d = launch(&bus, &repo, state.path(), "slow:3000", &[], "");
    d.wait_settled();
    let out = inferctl(&d.bus, &["--json", "warmup", "minilm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json(&out);
    assert_eq!(rows[0]["provider"], "tensorrt", "{rows}");
    assert_eq!(engine_dirs(state.path()).0.len(), 1);
    let nobody = inferctl_as_nobody(&d.bus, &["warmup", "minilm"]);
    assert_error(&nobody, "AccessDenied");
}

#[test]
fn without_a_gpu_provider_to_wait_on_the_engine_builds_before_serving() {
    let bus = Bus::start();
    let repo = Repo::new();
    add_trt_minilm(&repo, "");
    let toml = repo.path().join("minilm/model.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("intra_threads = 2", "intra_threads = 2\nrequire_gpu = true");
    std::fs::write(&toml, text).unwrap();
    let state = tempfile::tempdir().unwrap();
    let d = launch(&bus, &repo, state.path(), "slow:2000", &[], "");
    let loading = wait_model(&d, |_| true);
    assert_eq!(
        loading["state"], "loading",
        "require_gpu never serves on the CPU: {loading}"
    );
    let m = wait_model(&d, |m| m["state"] == "ready");
    assert_eq!(m["provider"], "tensorrt", "{m}");
}

#[test]
fn a_build_killed_midway_leaves_no_engine_and_is_cleaned_up() {
    let bus = Bus::start();
    let repo = Repo::new();
    add_trt_minilm(&repo, "");
    let state = tempfile::tempdir().unwrap();
    let d = launch(&bus, &repo, state.path(), "slow:30000", &[], "");
    wait_model(&d, |m| m["engine_build_s"].is_u64());
    let deadline = Instant::now() + WAIT;
    while engine_dirs(state.path()).1.is_empty() {
        assert!(Instant::now() < deadline, "no build folder");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.signal(Signal::SIGKILL);
    drop(d);
    let (keys, builds) = engine_dirs(state.path());
    assert!(
        keys.is_empty(),
        "a killed build published nothing: {keys:?}"
    );
    assert_eq!(builds.len(), 1);

    let d = launch(&bus, &repo, state.path(), "slow:500", &[], "");
    wait_model(&d, |m| m["provider"] == "tensorrt");
    let (keys, builds) = engine_dirs(state.path());
    assert_eq!((keys.len(), builds.len()), (1, 0), "{keys:?} {builds:?}");
}
