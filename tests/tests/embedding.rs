//! Embeddings through the real bus, compared with Python onnxruntime.

use inferd_e2e::*;
use serde_json::Value;

fn daemon() -> (Bus, Repo, Daemon) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let d = Daemon::start(&bus, &repo);
    (bus, repo, d)
}

fn embed(d: &Daemon, texts: &[&str]) -> Value {
    let mut args = vec!["--json", "embed", "minilm"];
    args.extend(texts);
    json(&inferctl(&d.bus, &args))
}

#[test]
fn embeddings_match_python_onnxruntime() {
    let (_bus, _repo, d) = daemon();
    let reference = minilm_reference();
    let cases = reference["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let out = embed(&d, &texts);
    for (i, case) in cases.iter().enumerate() {
        let diff = max_abs_diff(&out["embeddings"][i], &case["embedding"]);
        assert!(
            diff < 1e-4,
            "text {i} ({:?}) differs by {diff}",
            case["text"]
        );
        assert_eq!(out["tokens"][i], case["tokens"], "token count of text {i}");
        assert_eq!(
            out["truncated"][i], case["truncated"],
            "truncation of text {i}"
        );
    }
    assert_eq!(
        out["truncated"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| **t == true)
            .count(),
        1
    );
}

#[test]
fn a_text_embeds_the_same_alone_in_a_batch_and_under_concurrency() {
    let (_bus, _repo, d) = daemon();
    let texts = [
        "A man is playing a guitar.",
        "hello",
        "Someone is strumming a guitar while sitting.",
    ];
    let together = embed(&d, &texts);
    let alone: Vec<Value> = texts
        .iter()
        .map(|t| embed(&d, &[t])["embeddings"][0].clone())
        .collect();
    for (i, a) in alone.iter().enumerate() {
        let diff = max_abs_diff(a, &together["embeddings"][i]);
        assert!(
            diff < 1e-6,
            "text {i}: batch changed the embedding by {diff}"
        );
    }
    // Concurrent single-text callers are batched together by the worker.
    let children: Vec<_> = (0..12)
        .map(|i| inferctl_spawn(&d.bus, &["--json", "embed", "minilm", texts[i % 3]]))
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = json(&finish(c));
        let diff = max_abs_diff(&out["embeddings"][0], &alone[i % 3]);
        assert!(diff < 1e-6, "concurrent call {i} differs by {diff}");
    }
}

#[test]
fn similarity_matrix_ranks_related_sentences() {
    let (_bus, _repo, d) = daemon();
    let a = "A man is playing a guitar.";
    let b = "Someone is strumming a guitar.";
    let c = "The stock market fell sharply today.";
    let out = json(&inferctl(
        &d.bus,
        &["--json", "embed", "minilm", a, b, c, "--similarity"],
    ));
    let m = &out["similarity"];
    let at = |i: usize, j: usize| m[i][j].as_f64().unwrap();
    assert!((at(0, 0) - 1.0).abs() < 1e-5);
    assert!(at(0, 1) > 0.6, "related pair scored {}", at(0, 1));
    assert!(at(0, 2) < 0.1, "unrelated pair scored {}", at(0, 2));
    assert!((at(0, 1) - at(1, 0)).abs() < 1e-9);
    let text = stdout(&inferctl(
        &d.bus,
        &["embed", "minilm", a, b, "--similarity"],
    ));
    assert!(text.contains("[1] A man is playing a guitar."), "{text}");
    assert!(text.contains("1.0000"), "{text}");
}

#[test]
fn truncation_is_reported_or_refused() {
    let (_bus, _repo, d) = daemon();
    let long = vec!["word"; 400].join(" ");
    let out = inferctl(&d.bus, &["embed", "minilm", &long]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("text 1 was truncated"),
        "{}",
        stderr(&out)
    );
    let err = assert_error(
        &inferctl(&d.bus, &["embed", "minilm", "--no-truncate", &long]),
        "InvalidInput",
    );
    assert!(err.contains("max_length of 256"), "{err}");
}

#[test]
fn embed_errors_are_typed() {
    let (_bus, _repo, d) = daemon();
    let err = assert_error(
        &inferctl(&d.bus, &["embed", "nosuch", "x"]),
        "ModelNotFound",
    );
    assert!(err.contains("nosuch"), "{err}");
    let args = ["minilm", "1", "x", "1", "timeout_sm", "u", "5"];
    let out = busctl_call(&d.bus, "Embed", "sasa{sv}", &args);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("timeout_sm"), "{err}");
    let args = ["minilm", "1", "x", "1", "timeout_ms", "s", "5"];
    let out = busctl_call(&d.bus, "Embed", "sasa{sv}", &args);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("must be an unsigned integer"),
        "{err}"
    );
}

#[test]
fn the_intent_classifier_labels_commands() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("intent", "intent", "");
    let d = Daemon::start(&bus, &repo);
    assert_eq!(d.models()["intent"]["kind"], "classification");
    let cases = [
        ("turn on the lights in the kitchen", "lights_on"),
        ("will it be sunny tomorrow", "weather"),
        ("set a timer for 10 minutes", "timer"),
        ("play some jazz", "music"),
        ("make it louder", "volume"),
    ];
    let mut args = vec!["--json", "classify", "intent", "--top-k", "0"];
    args.extend(cases.iter().map(|c| c.0));
    let out = json(&inferctl(&d.bus, &args));
    for (i, (text, want)) in cases.iter().enumerate() {
        let labels = out[i]["labels"].as_array().unwrap();
        assert_eq!(labels[0]["label"], *want, "{text}: {labels:?}");
        assert_eq!(labels.len(), 7, "top_k 0 returns every label");
        let sum: f64 = labels.iter().map(|l| l["score"].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "scores are a softmax: {sum}");
    }
    let one = busctl_call(
        &d.bus,
        "Classify",
        "sasa{sv}",
        &["intent", "1", "what time is it", "1", "top_k", "u", "1"],
    );
    assert!(stdout(&one).contains("\"time\""), "{}", stdout(&one));
    assert_error(&inferctl(&d.bus, &["embed", "intent", "x"]), "InvalidInput");
}
