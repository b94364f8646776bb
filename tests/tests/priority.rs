//! Priority classes end to end: interactive requests take the slots of running background
//! generations, which pause and later resume with exactly the text they would have produced.

use std::time::{Duration, Instant};

use inferd_e2e::*;
use serde_json::Value;

const PROMPT: &str = "Once upon a time";

fn stream_text(out: &std::process::Output) -> String {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "delta")
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect()
}

fn background(d: &Daemon, max_tokens: &str) -> std::process::Child {
    inferctl_spawn(
        &d.bus,
        &[
            "--json",
            "generate",
            "tiny",
            PROMPT,
            "--max-tokens",
            max_tokens,
            "--temperature",
            "0",
            "--priority",
            "background",
        ],
    )
}

#[test]
fn interactive_work_pauses_background_generations_which_resume_unchanged() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_endless_llm("tiny", "max_sequences = 2\n");
    // No guaranteed background share: both slots may be taken.
    let d = Daemon::start_with(&bus, &repo, "[engine]\nbackground_share = 0.0\n");

    // Long enough that the background generations are still running when the interactive
    // ones arrive: about four seconds alone on this machine.
    let started = Instant::now();
    let out = finish(background(&d, "200"));
    assert!(out.status.success(), "{}", stderr(&out));
    let per_200 = started.elapsed().as_secs_f64().max(0.05);
    let tokens = ((4.0 / per_200).ceil() as usize * 200)
        .min(20_000)
        .to_string();
    let out = finish(background(&d, &tokens));
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = stream_text(&out);
    assert!(!reference.is_empty());

    let bg: Vec<_> = (0..2).map(|_| background(&d, &tokens)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.models()["tiny"]["active"] != 2 {
        assert!(Instant::now() < deadline, "{}", d.models()["tiny"]);
        std::thread::sleep(Duration::from_millis(10));
    }
    // Both slots are busy with background work; two interactive requests arrive at once.
    let interactive: Vec<_> = (0..2)
        .map(|i| {
            let bus = d.bus.clone();
            std::thread::spawn(move || {
                let prompt = format!("Question {i}:");
                busctl_json(
                    &bus,
                    "Complete",
                    "ssa{sv}",
                    &["tiny", &prompt, "1", "max_tokens", "u", "16"],
                )
            })
        })
        .collect();
    for t in interactive {
        let v = t.join().expect("interactive request");
        assert_eq!(v["data"][1]["completion_tokens"]["data"], 16, "{v}");
    }
    let mut bg = bg;
    for c in &mut bg {
        assert!(
            c.try_wait().unwrap().is_none(),
            "a background generation finished before the interactive requests were served: \
             they waited instead of taking its slot"
        );
    }
    for c in bg {
        let out = finish(c);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stream_text(&out),
            reference,
            "a paused and resumed generation must give the same text"
        );
    }
    assert_eq!(d.models()["tiny"]["active"], 0);
}

#[test]
fn priority_is_checked_on_every_transport() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let d = Daemon::start(&bus, &repo);
    let out = busctl_call(
        &d.bus,
        "Embed",
        "sasa{sv}",
        &["minilm", "1", "hi", "1", "priority", "s", "urgent"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("\"interactive\" or \"background\""), "{err}");
    let v = busctl_json(
        &d.bus,
        "EmbedWithInfo",
        "sasa{sv}",
        &["minilm", "1", "hi", "1", "priority", "s", "background"],
    );
    assert_eq!(v["data"][0].as_array().unwrap().len(), 1);
}
