//! What inferd takes on a small device: no ONNX Runtime in memory until a model needs it, and
//! what each text-generation stream takes in the KV cache, reported per model.

use std::time::{Duration, Instant};

use inferd_e2e::*;
use serde_json::Value;

fn maps_onnxruntime(d: &Daemon) -> bool {
    std::fs::read_to_string(format!("/proc/{}/maps", d.pid()))
        .unwrap()
        .contains("libonnxruntime")
}

/// With no model loaded, ONNX Runtime is not in the daemon's memory, yet its version, providers
/// and which library it is (and what found it) are known; the first model loads it.
#[test]
fn onnx_runtime_loads_with_the_first_model() {
    let bus = Bus::start();
    let repo = Repo::new();
    let d = Daemon::start(&bus, &repo);
    d.wait_settled();
    assert!(!maps_onnxruntime(&d), "libonnxruntime mapped with no model");
    assert_eq!(property(&d.bus, "RuntimeLoaded").trim(), "b false");
    assert!(property(&d.bus, "RuntimeVersion").contains("1.31.1"));
    assert!(property(&d.bus, "Providers").contains("CPUExecutionProvider"));
    let library = property(&d.bus, "RuntimeLibrary");
    let found = format!("{} (ORT_DYLIB_PATH)", ort_library().display());
    assert!(library.contains(&found), "{library}");

    repo.add_minilm("minilm");
    let out = inferctl(&d.bus, &["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    d.wait_settled();
    assert_eq!(d.models()["minilm"]["state"], "ready");
    assert!(maps_onnxruntime(&d));
    assert_eq!(property(&d.bus, "RuntimeLoaded").trim(), "b true");
}

/// Bytes one token takes in the KV cache, from the model's config.json: every layer's keys and
/// values, fp32.
fn kv_bytes_per_token(source: &str) -> u64 {
    let text = std::fs::read_to_string(test_models().join(source).join("config.json")).unwrap();
    let c: Value = serde_json::from_str(&text).unwrap();
    let n = |k: &str| c[k].as_u64().unwrap();
    n("num_hidden_layers") * 2 * n("num_key_value_heads") * n("head_dim") * 4
}

/// ListModels, Health() and `inferctl health` say what the KV caches take: per token, in use
/// by 4 running streams, and how many streams of the full context fit.
#[test]
fn kv_cache_use_is_reported_per_stream() {
    let bus = Bus::start();
    let repo = Repo::new();
    let (context, streams, max_tokens) = (1000, 4, 900);
    repo.add_llm(
        "tiny-qwen2",
        "llm",
        &format!(
            "[generation]\ncontext_length = {context}\nmax_sequences = {streams}\n\
             kv_cache_tokens = {}\n",
            context * streams
        ),
    );
    let d = Daemon::start(&bus, &repo);
    let per_token = kv_bytes_per_token("tiny-qwen2");
    let m = d.models()["llm"].clone();
    assert_eq!(m["kv_bytes_per_token"], per_token, "{m}");
    assert_eq!(
        m["kv_cache_bytes"],
        (context * streams) as u64 * per_token,
        "{m}"
    );
    assert_eq!(m["full_context_streams"], streams, "{m}");
    assert_eq!(m["kv_bytes_in_use"], 0, "{m}");

    let max = max_tokens.to_string();
    let children: Vec<_> = (0..streams)
        .map(|i| {
            let prompt = format!("story number {i}");
            inferctl_spawn(&d.bus, &["generate", "llm", &prompt, "--max-tokens", &max])
        })
        .collect();
    // While all 4 run, each holds its whole cache: its prompt + max_tokens. (`active` and the
    // bytes are two counters, read one after the other: wait for both.)
    let least = (streams * max_tokens) as u64 * per_token;
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let m = d.models()["llm"].clone();
        if m["active"] == streams && m["kv_bytes_in_use"].as_u64() >= Some(least) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "never 4 streams' caches at once: {m}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let in_use = running["kv_bytes_in_use"].as_u64().unwrap();
    assert!(
        in_use <= (context * streams) as u64 * per_token,
        "{in_use} bytes in use, over the limit: {running}"
    );
    assert_eq!(in_use % per_token, 0, "whole positions: {running}");

    let health = inferctl(&d.bus, &["--json", "health"]);
    let h: Value = serde_json::from_slice(&health.stdout).unwrap();
    let row = h["models"].as_array().unwrap()[0].clone();
    assert_eq!(row["kv_bytes_per_token"], per_token, "{h}");
    assert_eq!(row["full_context_streams"], streams, "{h}");
    let text = stdout(&inferctl(&d.bus, &["health"]));
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let line = format!(
        " MiB in use of {:.1} MiB, {:.1} KiB a token, {streams} full-context streams fit",
        mib((context * streams) as u64 * per_token),
        per_token as f64 / 1024.0
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("llm: KV cache ") && l.ends_with(&line)),
        "{text}"
    );

    for c in children {
        let out = finish(c);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Finished streams give their caches back; the prompt-prefix cache may keep the prompts'.
    let m = d.models()["llm"].clone();
    assert!(m["kv_bytes_in_use"].as_u64().unwrap() < least / 10, "{m}");
}

/// The daemon's memory in transparent huge pages (`AnonHugePages`).
fn huge_page_bytes(d: &Daemon) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", d.pid())).unwrap();
    let kb = rollup
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("AnonHugePages in smaps_rollup");
    kb * 1024
}

/// A CPU model's weights (the real SmolLM2 in fp32: about 600 MiB prepacked) are backed by
/// huge pages once it is loaded (`execution.huge_pages`, on by default); turned off, nothing
/// is, where the system leaves huge pages to what asks for them (`madvise`).
#[test]
fn weights_are_in_huge_pages_unless_turned_off() {
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    for on in [true, false] {
        let bus = Bus::start();
        let repo = Repo::new();
        repo.add_llm("smollm2-fp32", "llm", "");
        if !on {
            let toml = repo.path().join("llm/model.toml");
            let text = std::fs::read_to_string(&toml).unwrap();
            assert!(text.contains("[execution]\n"), "{text}");
            let text = text.replace("[execution]\n", "[execution]\nhuge_pages = false\n");
            std::fs::write(&toml, text).unwrap();
        }
        let d = Daemon::start(&bus, &repo);
        assert_eq!(d.models()["llm"]["state"], "ready", "{}", d.log());
        let huge = huge_page_bytes(&d);
        match (on, mode.contains("[never]"), mode.contains("[madvise]")) {
            (true, false, _) => assert!(huge >= 256 << 20, "{huge} bytes in huge pages"),
            (true, true, _) => assert_eq!(huge, 0, "huge pages while the system has them off"),
            (false, _, true) => assert_eq!(huge, 0, "huge pages with huge_pages = false"),
            (false, _, false) => {} // `always`: every process gets them, asked or not
        }
    }
}
