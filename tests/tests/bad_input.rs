//! R3: the bad-input corpus. Every case (D-Bus arguments, MQTT payloads, config files, model
//! folders) gets its typed error, and after each one a probe request succeeds. Run by
//! `make test`; `make reliability` records the count in docs/reliability.md.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use inferd_e2e::broker::v5_client;
use inferd_e2e::*;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};

/// The probe: the daemon still answers a plain request.
fn probe(d: &Daemon) {
    let out = gdbus_call(&d.bus, "Embed", &["minilm", "['probe']", "{}"]);
    assert!(out.status.success(), "probe failed: {}", stderr(&out));
}

/// A kind of bad input and the function that runs its cases.
type Section<'a> = (&'a str, &'a dyn Fn(&mut Tally));

struct Tally {
    cases: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, d: &Daemon, case: &str, got: &str, want: &str) {
        self.cases += 1;
        if !got.contains(want) {
            self.failures
                .push(format!("{case}: wanted {want:?}, got {got:?}"));
        }
        probe(d);
    }
}

fn dbus_cases(d: &Daemon, t: &mut Tally) {
    let big = "word ".repeat(20_000);
    let ops_a = |dtype: &str, shape: &str, bytes: &str| {
        format!("{{'a': ('{dtype}', @at {shape}, @ay {bytes})}}")
    };
    let cases: Vec<(&str, &str, Vec<String>, &str)> = vec![
        (
            "unknown model",
            "Embed",
            vec!["nosuch".into(), "['x']".into(), "{}".into()],
            "ModelNotFound",
        ),
        (
            "model named ..",
            "Embed",
            vec!["..".into(), "['x']".into(), "{}".into()],
            "ModelNotFound",
        ),
        (
            "model path escape",
            "Embed",
            vec!["../../etc/passwd".into(), "['x']".into(), "{}".into()],
            "ModelNotFound",
        ),
        (
            "option of the wrong type",
            "Embed",
            vec![
                "minilm".into(),
                "['x']".into(),
                "{'truncate': <'no'>}".into(),
            ],
            "InvalidInput",
        ),
        (
            "unknown option",
            "Embed",
            vec!["minilm".into(), "['x']".into(), "{'bogus': <1>}".into()],
            "InvalidInput",
        ),
        (
            "negative timeout",
            "Embed",
            vec![
                "minilm".into(),
                "['x']".into(),
                "{'timeout_ms': <int32 -5>}".into(),
            ],
            "InvalidInput",
        ),
        (
            "unknown priority",
            "Embed",
            vec![
                "minilm".into(),
                "['x']".into(),
                "{'priority': <'urgent'>}".into(),
            ],
            "InvalidInput",
        ),
        (
            "100 kB text, no truncation",
            "Embed",
            vec![
                "minilm".into(),
                format!("['{big}']"),
                "{'truncate': <false>}".into(),
            ],
            "InvalidInput",
        ),
        (
            "classify on an embedding model",
            "Classify",
            vec!["minilm".into(), "['x']".into(), "{}".into()],
            "InvalidInput",
        ),
        (
            "generate on an embedding model",
            "Complete",
            vec!["minilm".into(), "x".into(), "{}".into()],
            "InvalidInput",
        ),
        (
            "infer on an embedding model",
            "Infer",
            vec![
                "minilm".into(),
                ops_a("float32", "[1, 3]", "[0,0,0,0,0,0,0,0,0,0,0,0]"),
            ],
            "InvalidInput",
        ),
        (
            "unknown dtype",
            "Infer",
            vec!["ops".into(), ops_a("float99", "[1]", "[0,0,0,0]")],
            "InvalidInput",
        ),
        (
            "shape overflow",
            "Infer",
            vec![
                "ops".into(),
                ops_a("float32", "[4294967296, 4294967296]", "[0,0,0,0]"),
            ],
            "InvalidInput",
        ),
        (
            "data shorter than the shape",
            "Infer",
            vec!["ops".into(), ops_a("float32", "[1, 3]", "[0,0,0,0]")],
            "InvalidInput",
        ),
        (
            "missing inputs",
            "Infer",
            vec![
                "ops".into(),
                ops_a("float32", "[1, 3]", "[0,0,0,0,0,0,0,0,0,0,0,0]"),
            ],
            "InvalidInput",
        ),
        (
            "unknown input",
            "Infer",
            vec![
                "ops".into(),
                "{'zz': ('float32', @at [1], @ay [0,0,0,0])}".into(),
            ],
            "InvalidInput",
        ),
        (
            "max_tokens past the context",
            "Complete",
            vec![
                "tiny".into(),
                "Hi".into(),
                "{'max_tokens': <uint32 1000000000>}".into(),
            ],
            "InvalidInput",
        ),
        (
            "empty prompt",
            "Complete",
            vec!["tiny".into(), "".into(), "{}".into()],
            "InvalidInput",
        ),
        (
            "temperature out of range",
            "Complete",
            vec!["tiny".into(), "Hi".into(), "{'temperature': <-1.0>}".into()],
            "InvalidInput",
        ),
        (
            "handle_token with a slash",
            "Generate",
            vec![
                "tiny".into(),
                "Hi".into(),
                "{'handle_token': <'a/b'>}".into(),
            ],
            "InvalidInput",
        ),
        (
            "stop of the wrong type",
            "Complete",
            vec!["tiny".into(), "Hi".into(), "{'stop': <42>}".into()],
            "InvalidInput",
        ),
        (
            "load a path",
            "LoadModel",
            vec!["../minilm".into()],
            "ModelNotFound",
        ),
        (
            "load an invalid name",
            "LoadModel",
            vec!["MiniLM".into()],
            "ModelNotFound",
        ),
        (
            "unload an unknown model",
            "UnloadModel",
            vec!["nosuch".into()],
            "ModelNotFound",
        ),
        (
            "warm up a failed model",
            "Warmup",
            vec!["garbage".into()],
            "ModelNotReady",
        ),
    ];
    for (case, method, args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = gdbus_call(&d.bus, method, &args);
        let got = if out.status.success() {
            format!("success: {}", stdout(&out))
        } else {
            stderr(&out)
        };
        t.check(d, case, &got, &format!("org.inferd.Inferd1.Error.{want}"));
    }
}

fn mqtt_cases(broker: &Broker, d: &Daemon, t: &mut Tally) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (c, mut rx) = v5_client(broker, "bad-input", "test/bad", false).await;
        // The broker takes this client's packets in order: the subscription is in place before
        // any request below reaches inferd, and so before inferd's error for it.
        c.subscribe("inferd/n1/error", QoS::AtLeastOnce).await.unwrap();
        let nan = base64::engine::general_purpose::STANDARD.encode(
            [f32::NAN, f32::INFINITY, 1.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_in = format!(
            "{{\"id\":\"deep\",\"reply_to\":\"test/bad\",\"input\":{{\"texts\":{deep}}}}}"
        );
        let req = |id: &str, input: Value, options: Value| {
            json!({"id": id, "input": input, "options": options, "reply_to": "test/bad"})
                .to_string()
                .into_bytes()
        };
        let texts = json!({"texts": ["x"]});
        let ops = |a: Value| {
            json!({"inputs": {
                "a": a,
                "b": {"dtype": "float16", "shape": [1, 3], "data": [0.5, 1, -2]},
                "c": {"dtype": "int64", "shape": [1], "data": [41]},
                "d": {"dtype": "int32", "shape": [1, 2], "data": [-4, 5]},
                "e": {"dtype": "uint8", "shape": [1], "data": [255]},
                "f": {"dtype": "bool", "shape": [1], "data": [true]}
            }})
        };
        // (case, topic, payload, expected error code, or "ok" for inputs that are valid).
        let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
            ("not JSON", "minilm/embed", b"{not json".to_vec(), "invalid_input"),
            ("invalid UTF-8", "minilm/embed", vec![0xff, 0xfe, b'{', 0xc3, 0x28], "invalid_input"),
            ("10,000-deep JSON", "minilm/embed", deep.into_bytes(), "invalid_input"),
            ("10,000-deep JSON inside a request", "minilm/embed", deep_in.into_bytes(), "invalid_input"),
            ("a JSON array", "minilm/embed", b"[1, 2, 3]".to_vec(), "invalid_input"),
            ("no id", "minilm/embed", json!({"input": texts, "reply_to": "test/bad"}).to_string().into_bytes(), "invalid_input"),
            ("an object as id", "minilm/embed", json!({"id": {}, "input": texts, "reply_to": "test/bad"}).to_string().into_bytes(), "invalid_input"),
            ("unknown op", "minilm/sing", req("op", texts.clone(), json!({})), "invalid_input"),
            ("model named ..", "../embed", req("dots", texts.clone(), json!({})), "model_not_found"),
            ("unknown model", "nosuch/embed", req("nm", texts.clone(), json!({})), "model_not_found"),
            ("texts not a list", "minilm/embed", req("tl", json!({"texts": "x"}), json!({})), "invalid_input"),
            ("texts of numbers", "minilm/embed", req("tn", json!({"texts": [1, 2]}), json!({})), "invalid_input"),
            ("option of the wrong type", "minilm/embed", req("ow", texts.clone(), json!({"truncate": "yes"})), "invalid_input"),
            ("payload over max_payload", "minilm/embed", format!("{{\"id\":\"big\",\"reply_to\":\"test/bad\",\"pad\":\"{}\"}}", "x".repeat(1_100_000)).into_bytes(), "too_large"),
            ("invalid base64", "ops/infer", req("b64", ops(json!({"dtype": "float32", "shape": [1, 3], "data_b64": "!!!"})), json!({})), "invalid_input"),
            ("shape overflow", "ops/infer", req("so", ops(json!({"dtype": "float32", "shape": [4294967296u64, 4294967296u64], "data": [1]})), json!({})), "invalid_input"),
            ("zero-size tensor", "ops/infer", req("zs", ops(json!({"dtype": "float32", "shape": [0, 3], "data": []})), json!({})), "invalid_input"),
            ("wrong dtype", "ops/infer", req("wd", ops(json!({"dtype": "int32", "shape": [1, 3], "data": [1, 2, 3]})), json!({})), "invalid_input"),
            ("NaN and Inf values (valid input: they propagate)", "ops/infer", req("nan", ops(json!({"dtype": "float32", "shape": [1, 3], "data_b64": nan})), json!({})), "ok"),
            ("prompt past the context", "tiny/generate", req("long", json!({"prompt": "hello ".repeat(150_000)}), json!({"max_tokens": 4})), "invalid_input"),
            ("messages of the wrong shape", "tiny/chat", req("msg", json!({"messages": ["hi"]}), json!({})), "invalid_input"),
            ("stream of the wrong type", "tiny/generate", json!({"id": "st", "input": {"prompt": "x"}, "stream": "yes", "reply_to": "test/bad"}).to_string().into_bytes(), "invalid_input"),
        ];
        for (case, target, payload, want) in cases {
            c.publish(format!("inferd/n1/req/{target}"), QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
            let got = match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
                Ok(Some(p)) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    if v["ok"] == true {
                        "ok".to_owned()
                    } else {
                        v["error"]["code"].as_str().unwrap_or("no code").to_owned()
                    }
                }
                _ => "no answer".to_owned(),
            };
            t.check(d, case, &got, want);
        }
        // A cancel nobody can read is logged and changes nothing.
        c.publish("inferd/n1/cancel", QoS::AtLeastOnce, false, b"\xff garbage".to_vec())
            .await
            .unwrap();
        let log = tokio::task::block_in_place(|| d.wait_log("a cancel needs"));
        t.check(d, "garbage cancel", &log, "a cancel needs {\"id\": \"...\"}");
    });
}

fn config_cases(repo: &Repo, d: &Daemon, t: &mut Tally) {
    let dir = shared_tempdir("inferd-badconfig");
    let cases = [
        ("unknown config key", "[engine]\nshutdown_timeout = 5\n", "unknown field `shutdown_timeout`"),
        ("wrong type", "[engine]\nbackground_share = \"most\"\n", "invalid type"),
        ("share out of range", "[engine]\nbackground_share = 2.0\n", "between 0 and 1"),
        ("metrics on the network", "[metrics]\nlisten = \"0.0.0.0:9464\"\n", "not a loopback address"),
        ("broken TOML", "[engine\n", "TOML parse error"),
        ("missing password file", "[mqtt]\nenabled = true\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n", "/nonexistent/pw"),
        ("negative memory budget", "[engine]\nmemory_budget = -1\n", "invalid value"),
    ];
    for (case, text, want) in cases {
        let path = dir.path().join("inferd.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin("inferd"))
            .env("ORT_DYLIB_PATH", ort_library())
            .arg("--config")
            .arg(&path)
            .arg("--models")
            .arg(repo.path())
            .arg("check")
            .output()
            .unwrap();
        let got = format!("{}{}", stdout(&out), stderr(&out));
        let got = if out.status.success() {
            format!("accepted: {got}")
        } else {
            got
        };
        t.check(d, case, &got, want);
    }
    // The running daemon re-reads a broken file on SIGHUP: it keeps its config and serves.
    std::fs::write(d.config_path(), "[engine\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let log = d.wait_log("keeping the previous config");
    t.check(
        d,
        "SIGHUP with a broken config",
        &log,
        "keeping the previous config",
    );
}

/// The smallest ModelProto with one initializer stored as external data at `location`.
fn external_data_model(location: &str) -> Vec<u8> {
    fn field(n: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128);
        [vec![n << 3 | 2, body.len() as u8], body.to_vec()].concat()
    }
    let entry = [field(1, b"location"), field(2, location.as_bytes())].concat();
    // TensorProto: name (8), external_data (13), data_location = EXTERNAL (14 = 1).
    let tensor = [field(8, b"w"), field(13, &entry), vec![14 << 3, 1]].concat();
    let graph = field(5, &tensor);
    [vec![1 << 3, 8], field(7, &graph)].concat()
}

fn model_cases(d: &Daemon, t: &mut Tally) {
    let models = d.models();
    for (name, want) in [
        ("truncated", "not a readable ONNX model"),
        ("garbage", "not a readable ONNX model"),
        ("escape", "not allowed"),
        ("symlink", "outside the model folder"),
        ("folderlink", "outside the model repository"),
        ("extdata", "external data"),
        ("unknownkey", "unknown field `colour`"),
        ("nokind", "missing field `kind`"),
        ("badtokenizer", "tokenizer"),
        ("Bad Name", "not a valid model name"),
    ] {
        let m = &models[name];
        let got = format!("{} {}", m["state"], m["error"]);
        t.check(d, &format!("model folder: {name}"), &got, "\"failed\"");
        t.check(d, &format!("model folder: {name} (reason)"), &got, want);
    }
}

#[test]
fn every_bad_input_gets_its_typed_error_and_the_daemon_keeps_serving() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_test_model("ops", "ops", "kind = \"tensor\"\n");
    repo.add_llm("tiny-qwen2", "tiny", "");
    let onnx = std::fs::read(models_cache().join("minilm/model.onnx")).unwrap();
    let minilm_toml = std::fs::read_to_string(models_cache().join("minilm/model.toml")).unwrap();
    repo.write("truncated", "model.onnx", &onnx[..4096]);
    repo.write("truncated", "model.toml", "kind = \"tensor\"\n");
    repo.write("garbage", "model.onnx", b"\x00\x01garbage");
    repo.write("garbage", "model.toml", "kind = \"tensor\"\n");
    repo.write(
        "escape",
        "model.toml",
        "kind = \"tensor\"\nfile = \"../minilm/model.onnx\"\n",
    );
    repo.write("symlink", "model.toml", "kind = \"tensor\"\n");
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("symlink/model.onnx")).unwrap();
    // A model folder that is a symlink out of the repository.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("model.toml"), "kind = \"tensor\"\n").unwrap();
    std::fs::write(outside.path().join("model.onnx"), &onnx).unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("folderlink")).unwrap();
    // An ONNX model whose initializer's external data points out of its folder.
    repo.write("extdata", "model.toml", "kind = \"tensor\"\n");
    repo.write(
        "extdata",
        "model.onnx",
        external_data_model("../../../etc/passwd"),
    );
    repo.write(
        "unknownkey",
        "model.toml",
        "kind = \"tensor\"\ncolour = \"blue\"\n",
    );
    repo.write("unknownkey", "model.onnx", b"x");
    repo.write("nokind", "model.toml", "file = \"model.onnx\"\n");
    repo.add_minilm("badtokenizer");
    repo.write("badtokenizer", "tokenizer.json", b"{ not a tokenizer");
    repo.write("Bad Name", "model.toml", &minilm_toml);
    let d = Daemon::start_with(&bus, &repo, &broker.config("n1"));
    broker.wait_online("n1");
    let mut t = Tally {
        cases: 0,
        failures: Vec::new(),
    };
    let rss_start = rss_of(d.pid());
    let mut per_kind = Vec::new();
    let sections: [Section; 4] = [
        ("D-Bus", &|t| dbus_cases(&d, t)),
        ("MQTT", &|t| mqtt_cases(&broker, &d, t)),
        ("model-folder checks", &|t| model_cases(&d, t)),
        ("config", &|t| config_cases(&repo, &d, t)),
    ];
    for (kind, run) in sections {
        let before = t.cases;
        run(&mut t);
        per_kind.push(format!("{} {kind}", t.cases - before));
    }
    assert!(t.failures.is_empty(), "{}", t.failures.join("\n"));
    assert!(t.cases >= 40, "only {} cases", t.cases);
    record(
        "R3 bad input",
        json!({"load": format!("{} cases: {}", t.cases, per_kind.join(", ")),
               "faults": "each followed by a probe request",
               "sent": t.cases, "answered": format!("{} typed errors as expected, {} probes ok", t.cases, t.cases),
               "lost": 0, "duplicates": 0, "errors": {},
               "rss": format!("{} MiB → {} MiB", rss_start >> 20, rss_of(d.pid()) >> 20)}),
    );
}
