//! The reasoning split end to end, on `think`: a scripted model that answers every prompt with
//! `<think>REASONING</think>ANSWER`, one token per step, where `<think>` and `</think>` are
//! non-special tokens as in DeepSeek-R1-Distill (models/testdata/make_think_model.py).

use inferd_e2e::*;
use serde_json::Value;

const PROMPT: &str = "What is two plus two?";

struct Script {
    reasoning: String,
    answer: String,
}

fn setup() -> (Bus, Repo, Daemon, Script) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("think", "think", "");
    let d = Daemon::start(&bus, &repo);
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(test_models().join("think/script.json")).unwrap(),
    )
    .unwrap();
    let script = Script {
        reasoning: s["reasoning"].as_str().unwrap().to_owned(),
        answer: s["answer"].as_str().unwrap().to_owned(),
    };
    (bus, repo, d, script)
}

fn tokens(text: &str) -> usize {
    let tok = tokenizers::Tokenizer::from_file(test_models().join("think/tokenizer.json")).unwrap();
    tok.encode(text, false).unwrap().len()
}

#[test]
fn reasoning_is_separated_hidden_inlined_and_budgeted() {
    let (_bus, _repo, d, s) = setup();
    // `</think>` is counted with the reasoning it closes.
    let reasoning_tokens = (tokens(&s.reasoning) + 1) as f64;

    let (text, info) = complete(&d, "think", PROMPT, &[]);
    assert_eq!(text, s.answer, "separate is the default");
    assert_eq!(info_str(&info, "reasoning"), s.reasoning);
    assert_eq!(info_num(&info, "reasoning_tokens"), reasoning_tokens);
    assert_eq!(info_str(&info, "finish_reason"), "stop");

    let (text, info) = complete(&d, "think", PROMPT, &["reasoning", "s", "hide"]);
    assert_eq!(text, s.answer);
    assert!(
        info.get("reasoning").is_none(),
        "hidden reasoning is not returned: {info}"
    );
    assert_eq!(
        info_num(&info, "reasoning_tokens"),
        reasoning_tokens,
        "hidden reasoning still counts"
    );

    let (text, _) = complete(&d, "think", PROMPT, &["reasoning", "s", "inline"]);
    assert_eq!(text, format!("<think>{}</think>{}", s.reasoning, s.answer));

    // A budget of 3 reasoning tokens forces `</think>`; the script then goes on to its answer.
    let (text, info) = complete(&d, "think", PROMPT, &["reasoning_budget", "u", "3"]);
    assert_eq!(text, s.answer);
    let cut = info_str(&info, "reasoning");
    assert!(
        !cut.is_empty() && s.reasoning.starts_with(&cut) && cut.len() < s.reasoning.len(),
        "reasoning cut short: {cut:?}"
    );
    assert_eq!(tokens(&cut), 3);
}

#[test]
fn reasoning_streams_on_its_own_channel_before_the_answer() {
    let (_bus, _repo, d, s) = setup();
    let out = inferctl(&d.bus, &["--json", "generate", "think", PROMPT]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let deltas: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "delta")
        .map(|e| (e["channel"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    let on = |ch: &str| -> String {
        deltas
            .iter()
            .filter(|(c, _)| *c == ch)
            .map(|(_, t)| *t)
            .collect()
    };
    assert_eq!(on("reasoning"), s.reasoning);
    assert_eq!(on("content"), s.answer);
    let first_content = deltas.iter().position(|(c, _)| *c == "content").unwrap();
    assert!(
        deltas[first_content..].iter().all(|(c, _)| *c == "content"),
        "all reasoning comes before the answer: {deltas:?}"
    );
    assert!(
        deltas.iter().filter(|(c, _)| *c == "reasoning").count() > 1,
        "reasoning is streamed, not sent at the end"
    );
}

#[test]
fn the_chat_repl_streams_answers_and_resets() {
    let (_bus, _repo, d, s) = setup();
    let out = inferctl_with_input(
        &d.bus,
        &["chat", "think", "--hide-reasoning", "--system", "Be brief."],
        "What is two plus two?\n/reset\nAnd again?\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let answers: Vec<&str> = text.lines().collect();
    assert_eq!(
        answers,
        [s.answer.as_str(), s.answer.as_str()],
        "one answer per turn"
    );
    let err = stderr(&out);
    assert!(
        err.contains("chatting with think") && err.contains("(new conversation)"),
        "{err}"
    );
}
