//! Prompt-lookup drafts (speculative decoding) change how many graph runs a text takes, never
//! the text: each model is served twice, drafting (the default) and with
//! `speculative_tokens = 0`, and every answer must be the same, while the metrics show that
//! drafts were checked, taken and dropped. Covered: the real SmolLM2 in the optimum layout
//! (a dropped draft's cache is cut), inferd's genai-layout import, and the onnxruntime-genai
//! builder's export with its share buffer (dropped positions are written over in place).

use inferd_e2e::*;

const PLAIN: &str = "\n[generation]\nspeculative_tokens = 0\n";
const GREEDY: [&str; 6] = ["max_tokens", "u", "40", "temperature", "d", "0"];
const SAMPLED: [&str; 9] = [
    "max_tokens",
    "u",
    "40",
    "temperature",
    "d",
    "0.8",
    "seed",
    "t",
    "3",
];

/// A prompt whose answer quotes it: drafts from the prompt are mostly right.
fn quoting_prompt() -> String {
    let text = "The river wound through the valley, past farms and orchards, under old stone \
                bridges, and into the town where the market stood. "
        .repeat(3);
    format!("<|im_start|>user\n{text}Repeat the first sentence.<|im_end|>\n<|im_start|>assistant\n")
}

fn drafted(metrics: &str, model: &str, outcome: &str) -> f64 {
    sample(
        metrics,
        &format!("inferd_draft_tokens_total{{model=\"{model}\",outcome=\"{outcome}\"}}"),
    )
}

fn daemon_with_metrics(repo: &Repo, bus: &Bus) -> (Daemon, u16) {
    let port = free_port();
    let config = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    (Daemon::start_with(bus, repo, &config), port)
}

fn metrics(port: u16) -> String {
    scrape(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
}

#[test]
fn drafts_give_smollm2_the_same_text_greedy_sampled_and_streamed() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("smollm2-fp32", "drafting", "");
    repo.add_llm("smollm2-fp32", "plain", PLAIN);
    let (d, port) = daemon_with_metrics(&repo, &bus);
    let prompt = quoting_prompt();
    for opts in [&GREEDY[..], &SAMPLED[..]] {
        let (want, plain) = complete(&d, "plain", &prompt, opts);
        let (got, info) = complete(&d, "drafting", &prompt, opts);
        assert_eq!(got, want, "{opts:?}");
        let tokens = |i: &serde_json::Value| info_num(i, "completion_tokens");
        assert_eq!(tokens(&info), tokens(&plain), "{info}");
    }
    // The transformers fixture, with drafts (none of its prompts quote much, but any draft a
    // lookup finds is checked).
    for (prompt, case) in smollm2_greedy_cases() {
        let max = case["new_ids"].as_array().unwrap().len().to_string();
        let opts = ["max_tokens", "u", &max, "temperature", "d", "0"];
        assert_eq!(
            complete(&d, "drafting", &prompt, &opts).0,
            complete(&d, "plain", &prompt, &opts).0,
            "{}",
            case["prompt"]
        );
    }
    // A stream's deltas, in bursts of several tokens, add up to the same text.
    let out = inferctl(
        &d.bus,
        &[
            "generate",
            "drafting",
            &prompt,
            "--max-tokens",
            "40",
            "--temperature",
            "0",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (want, _) = complete(&d, "plain", &prompt, &GREEDY);
    assert_eq!(stdout(&out).strip_suffix('\n'), Some(want.as_str()));

    let m = metrics(port);
    assert!(drafted(&m, "drafting", "taken") >= 24.0, "{m}");
    assert_eq!(drafted(&m, "plain", "taken"), 0.0);
    assert_eq!(drafted(&m, "plain", "dropped"), 0.0);
}

#[test]
fn drafts_give_the_same_text_in_the_genai_layouts() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("tiny-qwen2", "optimum", "");
    repo.add_llm("tiny-qwen2", "optimum-plain", PLAIN);
    repo.add_llm("tiny-qwen2-genai", "genai", "");
    repo.add_llm("tiny-qwen2-genai", "genai-plain", PLAIN);
    for (name, line) in [
        ("builder", "share_buffer = true"),
        (
            "builder-plain",
            "share_buffer = true\nspeculative_tokens = 0",
        ),
    ] {
        repo.add_data_folder("builder-tiny-fp32", name);
        let toml = repo.path().join(name).join("model.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        std::fs::write(&toml, format!("{text}\n[generation]\n{line}\n")).unwrap();
    }
    let (d, port) = daemon_with_metrics(&repo, &bus);
    for prompt in ["Hello there", "1, 2, 3, 1, 2, 3,", "The weather today is"] {
        for model in ["optimum", "genai", "builder"] {
            for opts in [&GREEDY[..], &SAMPLED[..]] {
                let (want, _) = complete(&d, &format!("{model}-plain"), prompt, opts);
                let (got, _) = complete(&d, model, prompt, opts);
                assert_eq!(got, want, "{model} {prompt:?} {opts:?}");
            }
        }
    }
    let m = metrics(port);
    for model in ["optimum", "genai", "builder"] {
        // Random weights repeat themselves: drafts are both taken and dropped.
        assert!(drafted(&m, model, "taken") > 0.0, "{model}: {m}");
        assert!(drafted(&m, model, "dropped") > 0.0, "{model}: {m}");
    }
}
