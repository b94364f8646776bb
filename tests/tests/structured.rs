//! Structured output and tool calls on D-Bus and MQTT (the HTTP API's own tests are in
//! tests/openai): every answer to the fixture's prompts, constrained by its JSON schema, and
//! every call's arguments validate against their schema with Python's `jsonschema` (an
//! independent validator), on both transports.

use std::process::Command;

use inferd_e2e::*;
use serde_json::{json, Value};

fn fixture() -> Value {
    let path = tests_dir().join("fixtures/structured_output.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Checks every answer with `jsonschema.validate`; fails naming the first that is not valid.
fn assert_valid(schema: &Value, answers: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answers.json");
    std::fs::write(
        &file,
        json!({"schema": schema, "answers": answers}).to_string(),
    )
    .unwrap();
    let script = "import json, sys, jsonschema\n\
                  d = json.load(open(sys.argv[1]))\n\
                  for a in d['answers']:\n    jsonschema.validate(json.loads(a), d['schema'])\n\
                  print(len(d['answers']), 'valid')";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(&file)
        .output()
        .expect("python");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("{} valid", answers.len()));
}

#[test]
fn answers_fit_their_schema_on_dbus_and_mqtt() {
    let fx = fixture();
    let schema = fx["schema"].clone();
    let prompts: Vec<String> = fx["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    let max = fx["max_tokens"].to_string();
    let format = json!({"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}});
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("smollm2-fp32", "smollm2-fp32", "");
    let d = Daemon::start_with(&bus, &repo, &broker.config("n1"));
    d.wait_settled();
    broker.wait_online("n1");

    // D-Bus: the schema as JSON text in the a{sv} option, several callers at once.
    let format_text = format.to_string();
    let answers: Vec<String> = std::thread::scope(|s| {
        let calls: Vec<_> = prompts
            .iter()
            .map(|p| {
                let (d, f, m) = (&d, &format_text, &max);
                s.spawn(move || {
                    let opts = [
                        "response_format",
                        "s",
                        f,
                        "max_tokens",
                        "u",
                        m,
                        "temperature",
                        "d",
                        "0",
                    ];
                    let (text, info) = chat(d, "smollm2-fp32", p, &opts);
                    assert_eq!(info_str(&info, "finish_reason"), "stop", "{p}: {text}");
                    text
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_valid(&fx["schema"], &answers);

    // MQTT: the response_format object itself in the options, all published at once.
    let sub = broker.subscribe_for("test/structured", prompts.len(), 300);
    for (i, p) in prompts.iter().enumerate() {
        let payload = json!({
            "id": i.to_string(),
            "input": {"messages": [{"role": "user", "content": p}]},
            "options": {"response_format": format, "max_tokens": fx["max_tokens"], "temperature": 0},
            "reply_to": "test/structured",
        });
        broker.publish("inferd/n1/req/smollm2-fp32/chat", &payload.to_string());
    }
    let replies = sub.collect();
    assert_eq!(replies.len(), prompts.len());
    let answers: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r["ok"], true, "{r}");
            assert_eq!(r["result"]["finish_reason"], "stop", "{r}");
            r["result"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_valid(&fx["schema"], &answers);

    // An invalid schema is a typed error on both, before any decoding.
    let served = d.models()["smollm2-fp32"]["served"].clone();
    let out = busctl_call(
        &d.bus,
        "ChatComplete",
        "sa(ss)a{sv}",
        &[
            "smollm2-fp32",
            "1",
            "user",
            "hi",
            "1",
            "response_format",
            "s",
            r##"{"type": "json_schema", "json_schema": {"schema": {"$ref": "#/nowhere"}}}"##,
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid response_format schema"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.models()["smollm2-fp32"]["served"], served);

    // Tools: a required call comes back as `tool_calls` on both, its arguments valid.
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                       "required": ["city"], "additionalProperties": false}}}]);
    let params = tools[0]["function"]["parameters"].clone();
    let tools_text = tools.to_string();
    let opts = [
        "tools",
        "s",
        &tools_text,
        "tool_choice",
        "s",
        "required",
        "temperature",
        "d",
        "0",
    ];
    let (text, info) = chat(&d, "smollm2-fp32", "What is the weather in Paris?", &opts);
    assert_eq!(text, "", "a call only");
    let calls: Value = serde_json::from_str(&info_str(&info, "tool_calls")).unwrap();
    assert_eq!(calls[0]["name"], "get_weather", "{calls}");
    let args = vec![calls[0]["arguments"].to_string()];
    assert_valid(&params, &args);

    // MQTT: the call, then the conversation with its result, whole messages in JSON.
    let sub = broker.subscribe_for("test/tools", 1, 120);
    let ask = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    let publish = |id: &str, messages: &Value, choice: &str| {
        let payload = json!({
            "id": id, "input": {"messages": messages}, "reply_to": "test/tools",
            "options": {"tools": tools, "tool_choice": choice, "temperature": 0, "max_tokens": 40},
        });
        broker.publish("inferd/n1/req/smollm2-fp32/chat", &payload.to_string());
    };
    publish("call", &ask, "required");
    let r = &sub.collect()[0];
    assert_eq!(r["ok"], true, "{r}");
    let call = r["result"]["tool_calls"][0].clone();
    assert_eq!(call["name"], "get_weather");
    assert_valid(&params, &[call["arguments"].to_string()]);
    let sub = broker.subscribe_for("test/tools", 1, 120);
    let mut back = ask.as_array().unwrap().clone();
    back.push(json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": call["arguments"]}}]}));
    back.push(json!({"role": "tool", "tool_call_id": "c1", "content": "18 degrees, sunny"}));
    publish("answer", &Value::Array(back), "none");
    let r = &sub.collect()[0];
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["result"]["tool_calls"].is_null(), "{r}");
    assert!(!r["result"]["text"].as_str().unwrap().is_empty(), "{r}");
}
