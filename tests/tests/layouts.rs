//! Both LLM download layouts, served side by side from the same random weights (tiny-qwen2):
//! the optimum layout (`position_ids`, continuous batching) and the onnxruntime-genai builder's
//! (GroupQueryAttention, no `position_ids`, head size only in genai_config.json), which cannot
//! batch and falls back to token interleaving.

use inferd_e2e::*;

const PROMPTS: [&str; 3] = ["Hello there", "The weather today is", "1, 2, 3,"];

#[test]
fn the_genai_builder_layout_gives_the_same_text_and_interleaves() {
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

    // Concurrent requests on the genai layout: each still gives its own text, interleaved.
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
    assert_eq!(
        models["genai"]["batched_tokens"], 0,
        "GQA graphs are not batched"
    );
    assert_eq!(models["genai"]["state"], "ready");
}
