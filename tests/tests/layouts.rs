//! Both LLM download layouts, served side by side from the same random weights (tiny-qwen2):
//! the optimum layout (`position_ids`, rows right-aligned in the continuous batch) and the
//! onnxruntime-genai builder's (GroupQueryAttention, no `position_ids`, head size only in
//! genai_config.json, rows left-aligned in the batch); and the builder's own exports against
//! onnxruntime-genai.

use inferd_e2e::*;

const PROMPTS: [&str; 3] = ["Hello there", "The weather today is", "1, 2, 3,"];

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
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tests_dir().join("fixtures/builder_tiny_greedy.json")).unwrap(),
    )
    .unwrap();
    let tokens = reference["tokens"].as_u64().unwrap().to_string();
    let bus = Bus::start();
    let repo = Repo::new();
    for p in ["fp32", "int4"] {
        repo.add_data_folder(&format!("builder-tiny-{p}"), &format!("builder-tiny-{p}"));
    }
    // The same fp32 file without the share buffer its genai_config.json asks for: the cache is
    // then handed from each step's present to the next step's past instead of written in place.
    repo.add_data_folder("builder-tiny-fp32", "concat");
    let toml = repo.path().join("concat/model.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        format!("{text}\n[generation]\nshare_buffer = false\n"),
    )
    .unwrap();
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
    assert!(reused >= 32.0, "the shared beginning came from the cache: {reused}");
    assert_eq!(cached, uncached);
}
