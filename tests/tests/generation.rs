//! Text generation end to end: the real daemon, real imported models, real D-Bus clients.

use std::process::Command;
use std::time::{Duration, Instant};

use inferd_e2e::*;
use serde_json::Value;

const FRANCE: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

fn daemon(extra: &str) -> (Bus, Repo, Daemon) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("smollm2-fp32", "smollm2", extra);
    let d = Daemon::start(&bus, &repo);
    (bus, repo, d)
}

#[test]
fn greedy_complete_reproduces_the_golden_token_ids() {
    let (_bus, _repo, d) = daemon("");
    let tok = tokenizers::Tokenizer::from_file(test_models().join("smollm2-fp32/tokenizer.json"))
        .unwrap();
    for (prompt, case) in smollm2_greedy_cases() {
        let ids: Vec<u32> = case["new_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let ends_with_eos = ids.last() == Some(&2);
        let body: Vec<u32> = ids.iter().copied().filter(|&i| i != 2).collect();
        let max = ids.len().to_string();
        let (text, info) = complete(
            &d,
            "smollm2",
            &prompt,
            &["max_tokens", "u", &max, "temperature", "d", "0"],
        );
        assert_eq!(text, tok.decode(&body, true).unwrap(), "{}", case["prompt"]);
        assert_eq!(info_num(&info, "completion_tokens") as usize, body.len());
        assert_eq!(
            info_str(&info, "finish_reason"),
            if ends_with_eos { "stop" } else { "length" }
        );
        assert_eq!(
            info_num(&info, "prompt_tokens") as usize,
            case["prompt_ids"].as_array().unwrap().len()
        );
    }
}

#[test]
fn streaming_gives_the_same_text_as_blocking() {
    let (_bus, _repo, d) = daemon("");
    let (text, info) = complete(&d, "smollm2", FRANCE, &["max_tokens", "u", "24"]);
    let out = inferctl(
        &d.bus,
        &[
            "--json",
            "generate",
            "smollm2",
            FRANCE,
            "--max-tokens",
            "24",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let streamed: String = events
        .iter()
        .filter(|e| e["type"] == "delta")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    assert!(text.contains("Paris"), "{text}");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "finished");
    assert_eq!(
        last["info"]["completion_tokens"].as_f64(),
        Some(info_num(&info, "completion_tokens"))
    );
    assert_eq!(
        last["finish_reason"].as_str(),
        Some(info_str(&info, "finish_reason").as_str())
    );
}

#[test]
fn seeds_stop_strings_and_chat_templates() {
    let (_bus, _repo, d) = daemon("");
    let sampled = |seed: &str| {
        complete(
            &d,
            "smollm2",
            "Once upon a time",
            &[
                "max_tokens",
                "u",
                "24",
                "temperature",
                "d",
                "1.0",
                "seed",
                "t",
                seed,
            ],
        )
        .0
    };
    assert_eq!(sampled("7"), sampled("7"), "same seed, same text");
    assert_ne!(sampled("7"), sampled("8"), "another seed, other text");

    let (text, info) = complete(&d, "smollm2", FRANCE, &["stop", "as", "1", "Paris"]);
    assert_eq!(text, "The capital of France is ");
    assert_eq!(info_str(&info, "finish_reason"), "stop");

    let question = "What is the capital of France?";
    let (text, info) = chat(&d, "smollm2", question, &["max_tokens", "u", "12"]);
    assert!(text.contains("Paris"), "{text} {info}");
}

#[test]
fn bad_generation_requests_get_typed_errors() {
    let (_bus, _repo, d) = daemon("[generation]\ncontext_length = 64\n");
    let long = "word ".repeat(80);
    let e = assert_error(
        &inferctl(&d.bus, &["generate", "smollm2", &long, "--max-tokens", "8"]),
        "InvalidInput",
    );
    assert!(e.contains("exceeds the context length of 64"), "{e}");
    let ok = busctl_call(
        &d.bus,
        "Complete",
        "ssa{sv}",
        &[
            "smollm2",
            &long,
            "2",
            "max_tokens",
            "u",
            "4",
            "truncate",
            "b",
            "true",
        ],
    );
    assert!(
        ok.status.success(),
        "truncate must make it fit: {}",
        stderr(&ok)
    );
    let e = stderr(&busctl_call(
        &d.bus,
        "Complete",
        "ssa{sv}",
        &["smollm2", "hi", "1", "max_token", "u", "4"],
    ));
    assert!(e.contains("unknown option \"max_token\""), "{e}");
    let e = stderr(&busctl_call(
        &d.bus,
        "Complete",
        "ssa{sv}",
        &["smollm2", "hi", "1", "temperature", "s", "hot"],
    ));
    assert!(e.contains("\"temperature\" must be a number"), "{e}");
    assert_error(
        &inferctl(&d.bus, &["generate", "nosuch", "hi"]),
        "ModelNotFound",
    );
    assert!(
        inferctl(&d.bus, &["generate", "smollm2", "hi", "--max-tokens", "2"])
            .status
            .success()
    );
}

#[test]
fn concurrent_streams_each_give_their_text_alone() {
    let (_bus, _repo, d) = daemon("");
    let prompts = [
        "The sea is",
        "My favourite food is",
        "In 1492,",
        "Rust is a language that",
    ];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| complete(&d, "smollm2", p, &["max_tokens", "u", "24"]).0)
        .collect();
    let children: Vec<_> = prompts
        .iter()
        .map(|p| {
            inferctl_spawn(
                &d.bus,
                &["--json", "generate", "smollm2", p, "--max-tokens", "24"],
            )
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = finish(c);
        assert!(out.status.success(), "{}", stderr(&out));
        let text: String = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["type"] == "delta")
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(text, alone[i], "stream {i}");
    }
    let batched = d.models()["smollm2"]["batched_tokens"].as_u64().unwrap();
    assert!(batched > 0, "the streams never shared a decode step");
}

/// A daemon serving random-weight tiny-qwen2 as `tiny`: it practically never emits EOS, so a
/// long generation stays active until it is cancelled.
fn tiny_daemon() -> (Bus, Repo, Daemon) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_endless_llm("tiny", "");
    let d = Daemon::start(&bus, &repo);
    (bus, repo, d)
}

const LONG: [&str; 6] = [
    "--json",
    "generate",
    "tiny",
    "Tell me a long story.",
    "--max-tokens",
    "90000",
];

fn wait_active(d: &Daemon, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.models()["tiny"]["active"] != want {
        assert!(
            Instant::now() < deadline,
            "active never became {want}: {}",
            d.models()["tiny"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupt(child: &std::process::Child) {
    send_signal(child, nix::sys::signal::Signal::SIGINT);
}

#[test]
fn cancel_and_vanishing_clients_free_their_sequence() {
    let (_bus, _repo, d) = tiny_daemon();
    // Ctrl-C in inferctl cancels the answer: it ends `cancelled` and inferctl fails.
    let child = inferctl_spawn(&d.bus, &LONG);
    wait_active(&d, 1);
    interrupt(&child);
    let out = finish(child);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("Cancelled"), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"finish_reason\":\"cancelled\""),
        "{}",
        stdout(&out)
    );
    wait_active(&d, 0);

    // A client that disappears mid-stream frees its sequence.
    let mut child = inferctl_spawn(&d.bus, &LONG);
    wait_active(&d, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    wait_active(&d, 0);
}

#[test]
fn only_the_caller_sees_and_cancels_its_stream() {
    let (_bus, _repo, d) = tiny_daemon();
    let monitor = Monitor::start(&d.bus);
    let child = inferctl_spawn(&d.bus, &LONG);
    wait_active(&d, 1);
    // Another connection may not cancel it: find the request object and try.
    let paths = object_paths(&d.bus);
    let path = paths
        .iter()
        .find(|p| p.starts_with("/org/inferd/Inferd1/request/"))
        .unwrap_or_else(|| panic!("no request object in {paths:?}"));
    let other = Command::new("busctl")
        .args([
            "--address",
            &d.bus,
            "call",
            "org.inferd.Inferd1",
            path,
            "org.inferd.Inferd1.Request",
            "Cancel",
        ])
        .output()
        .unwrap();
    assert!(
        stderr(&other).contains("only the caller"),
        "{}",
        stderr(&other)
    );
    assert_eq!(
        d.models()["tiny"]["active"],
        1,
        "a stranger's Cancel must not stop it"
    );
    interrupt(&child);
    let out = finish(child);
    assert!(
        stdout(&out)
            .lines()
            .filter(|l| l.contains("\"delta\""))
            .count()
            > 0,
        "the caller got its deltas"
    );
    // A broadcast signal proves the monitor was listening all along.
    assert!(inferctl(&d.bus, &["unload", "tiny"]).status.success());
    let seen = monitor.stop_after("ModelStateChanged ('tiny', 'unloaded')");
    assert!(
        seen.contains("ModelStateChanged"),
        "the monitor heard nothing:\n{seen}"
    );
    assert!(
        !seen.contains("Request.Delta"),
        "another client saw the stream:\n{seen}"
    );
}

#[test]
fn a_shared_prompt_prefix_is_served_from_the_cache_with_the_same_text() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("smollm2-fp32", "smollm2", "");
    repo.add_llm("smollm2-fp32", "fresh", "");
    let d = Daemon::start(&bus, &repo);
    let system =
        "You are a concise assistant for a smart home. You answer in one sentence, you never \
                  invent facts, and you always name the room a device is in when it matters. ";
    let ask = |model: &str, question: &str| {
        let prompt = format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n");
        let v = busctl_json(
            &d.bus,
            "Complete",
            "ssa{sv}",
            &[model, &prompt, "1", "max_tokens", "u", "16"],
        );
        (
            v["data"][0].as_str().unwrap().to_owned(),
            v["data"][1]["cached_prompt_tokens"]["data"]
                .as_u64()
                .unwrap(),
        )
    };
    let (uncached, _) = ask("fresh", "Is the kitchen light on?");
    ask("smollm2", "What is the weather like?");
    let (cached, reused) = ask("smollm2", "Is the kitchen light on?");
    assert!(
        reused >= 32,
        "the system prompt should come from the cache, reused {reused}"
    );
    assert_eq!(cached, uncached);
}
