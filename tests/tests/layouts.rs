//! Both LLM download layouts, served side by side from the same random weights (tiny-qwen2):
//! the optimum layout (`position_ids`, rows right-aligned in the continuous batch) and the
//! onnxruntime-genai builder's (GroupQueryAttention, no `position_ids`, head size only in
//! genai_config.json, rows left-aligned in the batch); and the builder's own exports against
//! onnxruntime-genai.

use inferd_e2e::*;

const PROMPTS: [&str; 3] = ["Hello there", "The weather today is", "1, 2, 3,"];

/// onnxruntime-genai 0.18's greedy text on the builder exports (tests/fixtures).
fn builder_reference() -> serde_json::Value {
    let path = tests_dir().join("fixtures/builder_tiny_greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fp32 builder export as `name`, with a `[generation]` line in its manifest.
fn add_with_generation(repo: &Repo, name: &str, line: &str) {
    repo.add_data_folder("builder-tiny-fp32", name);
    let toml = repo.path().join(name).join("model.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n[generation]\n{line}\n")).unwrap();
}

#[test]
fn the_genai_builder_layout_gives_the_same_text_and_batches() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("tiny-qwen2", "optimum", "");
    repo.add_llm("tiny-qwen2-genai", "genai", "");
    let d = Daemon::start(&bus, &repo);
    let greedy = ["max_tokens", "u", "20", "temperature", "d", "0"];
    let alone: Vec<String> = PROMPTS
        .iter()
        .map(|p| {
            let (want, _) = complete(&d, "optimum", p, &greedy);
            let (got, info) = complete(&d, "genai", p, &greedy);
            assert_eq!(got, want, "{p}");
            assert_eq!(info_num(&info, "completion_tokens"), 20.0);
            got
        })
        .collect();

    // Concurrent requests on the genai layout: each still gives its own text, batched.
    let children: Vec<_> = PROMPTS
        .iter()
        .map(|p| {
            inferctl_spawn(
                &d.bus,
                &[
                    "generate",
                    "genai",
                    p,
                    "--max-tokens",
                    "20",
                    "--temperature",
                    "0",
                ],
            )
        })
        .collect();
    for (c, want) in children.into_iter().zip(&alone) {
        let out = finish(c);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).strip_suffix('\n'), Some(want.as_str()));
    }
    let models = d.models();
    assert!(
        models["genai"]["batched_tokens"].as_u64() > Some(0),
        "the GQA requests never shared a step: {}",
        models["genai"]
    );
    assert_eq!(models["genai"]["state"], "ready");
}

/// Exports of onnxruntime-genai's own model builder (`make builder-models`: random Llama
/// weights, fp32 and int4), against onnxruntime-genai's greedy tokens on the same files
/// (tests/fixtures/builder_tiny_greedy.json): alone, and all prompts at once.
#[test]
fn builder_exports_give_onnxruntime_genais_text() {
    let reference = builder_reference();
    let tokens = reference["tokens"].as_u64().unwrap().to_string();
    let bus = Bus::start();
    let repo = Repo::new();
    for p in ["fp32", "int4"] {
        repo.add_data_folder(&format!("builder-tiny-{p}"), &format!("builder-tiny-{p}"));
    }
    // The same fp32 file without the share buffer its genai_config.json asks for: the cache is
    // then handed from each step's present to the next step's past instead of written in place.
    add_with_generation(&repo, "concat", "share_buffer = false");
    let d = Daemon::start(&bus, &repo);
    let fp32 = reference["models"]["builder-tiny-fp32"]
        .as_object()
        .unwrap();
    for (prompt, want) in fp32 {
        let (got, _) = complete(&d, "concat", prompt, &["max_tokens", "u", &tokens]);
        assert_eq!(
            got,
            want["text"].as_str().unwrap(),
            "without the share buffer, {prompt:?}"
        );
    }
    for (name, runs) in reference["models"].as_object().unwrap() {
        let runs = runs.as_object().unwrap();
        for (prompt, want) in runs {
            let (got, _) = complete(&d, name, prompt, &["max_tokens", "u", &tokens]);
            assert_eq!(
                got,
                want["text"].as_str().unwrap(),
                "{name}, {prompt:?} alone"
            );
        }
        let children: Vec<_> = runs
            .keys()
            .map(|p| inferctl_spawn(&d.bus, &["generate", name, p, "--max-tokens", &tokens]))
            .collect();
        for (c, (prompt, want)) in children.into_iter().zip(runs) {
            let out = finish(c);
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(
                stdout(&out).strip_suffix('\n'),
                want["text"].as_str(),
                "{name}, {prompt:?} among others"
            );
        }
        assert!(
            d.models()[name]["batched_tokens"].as_u64() > Some(0),
            "{name}: the requests never shared a step"
        );
    }
}

/// The prompt-prefix cache with a share buffer: a cached prefix is copied into a buffer with room
/// for the rest, and the text is the same as without the cache.
#[test]
fn a_cached_prefix_in_a_share_buffer_gives_the_same_text() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_data_folder("builder-tiny-fp32", "tiny");
    repo.add_data_folder("builder-tiny-fp32", "fresh");
    let d = Daemon::start(&bus, &repo);
    let system = "The kitchen light is on. Turn off the lights in the living room. ".repeat(3);
    let ask = |model: &str, question: &str| {
        let (text, info) = complete(
            &d,
            model,
            &format!("{system}{question}"),
            &["max_tokens", "u", "24"],
        );
        (text, info_num(&info, "cached_prompt_tokens"))
    };
    let (uncached, _) = ask("fresh", "What is the weather like today?");
    ask("tiny", "Play some music in the bedroom.");
    let (cached, reused) = ask("tiny", "What is the weather like today?");
    assert!(
        reused >= 32.0,
        "the shared beginning came from the cache: {reused}"
    );
    assert_eq!(cached, uncached);
}

/// `generation.kv_cache_tokens`: the caches' limit is part of the model's `memory_bytes` from the
/// load on; requests that would overflow it beside the running ones wait their turn (and give
/// the same text), and one that could never fit is refused with a typed error.
#[test]
fn the_kv_cache_limit_is_counted_and_never_overflowed() {
    let reference = builder_reference();
    let tokens = reference["tokens"].as_u64().unwrap().to_string();
    let bus = Bus::start();
    let repo = Repo::new();
    // Room for one of the requests below (a prompt of 6–8 tokens + 32), not two.
    add_with_generation(&repo, "tight", "kv_cache_tokens = 64");
    let d = Daemon::start(&bus, &repo);
    let m = d.models()["tight"].clone();
    // 2 layers × (keys, values) × 2 KV heads × head size 16 × 4 bytes = 512 bytes a position.
    assert_eq!(m["kv_cache_bytes"], 64 * 512, "{m}");
    assert!(m["memory_bytes"].as_u64() > Some(64 * 512), "{m}");

    let runs = reference["models"]["builder-tiny-fp32"]
        .as_object()
        .unwrap();
    let children: Vec<_> = runs
        .keys()
        .map(|p| inferctl_spawn(&d.bus, &["generate", "tight", p, "--max-tokens", &tokens]))
        .collect();
    for (c, (prompt, want)) in children.into_iter().zip(runs) {
        let out = finish(c);
        assert!(out.status.success(), "{prompt:?}: {}", stderr(&out));
        assert_eq!(stdout(&out).strip_suffix('\n'), want["text"].as_str());
    }
    let m = d.models()["tight"].clone();
    assert_eq!(m["served"], runs.len() as u64, "{m}");
    assert_eq!(m["batched_tokens"], 0, "two sequences shared a step: {m}");

    let e = assert_error(
        &inferctl(
            &d.bus,
            &["generate", "tight", "Hello there", "--max-tokens", "60"],
        ),
        "InvalidInput",
    );
    assert!(
        e.contains("exceeds the context length of 64 (all the KV cache holds"),
        "{e}"
    );
}
