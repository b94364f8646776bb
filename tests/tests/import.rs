//! `inferctl import` of a GGUF file, natively (the Rust importer, no Python): the folder it writes
//! is served as it is and gives transformers' greedy text for the fixture's prompts. `make
//! models` imports the default `smollm2` this way, so this is the README's first example, which
//! goes through the chat template and its default system prompt.

use inferd_e2e::*;

#[test]
fn a_natively_imported_gguf_gives_transformers_greedy_text() {
    let bus = Bus::start();
    let repo = Repo::new();
    import_model(&smollm2_gguf(), "smollm2", repo.path(), &[]);
    let d = Daemon::start(&bus, &repo);
    let m = d.models()["smollm2"].clone();
    assert_eq!(m["state"], "ready", "{m}");
    for (prompt, case) in smollm2_greedy_cases() {
        let max = case["new_ids"].as_array().unwrap().len().to_string();
        let (text, _) = complete(
            &d,
            "smollm2",
            &prompt,
            &["max_tokens", "u", &max, "temperature", "d", "0"],
        );
        let want = case["text"].as_str().unwrap().replace("<|im_end|>", "");
        assert_eq!(text, want, "{}", case["prompt"]);
    }
    // The README's `inferctl chat smollm2` question: its first tokens nearly tie (0.08 apart), so
    // int8 activations on the LM head answered in French nonsense. The reference is the Python
    // importer's fp32 import of the same GGUF, greedy in Python onnxruntime, 2026-12-07.
    let question = "What is the capital of France?";
    let (text, info) = chat(&d, "smollm2", question, &["temperature", "d", "0"]);
    assert_eq!(text, "The capital of France is Paris.", "{info}");
}
