//! Stock D-Bus tools against the real daemon: busctl, gdbus, introspection, signals.

use std::process::Command;

use inferd_e2e::*;

fn daemon() -> (Bus, Repo, Daemon) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_test_model("ops", "ops", "kind = \"tensor\"\n");
    let d = Daemon::start(&bus, &repo);
    (bus, repo, d)
}

fn busctl(d: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new("busctl")
        .args(["--address", &d.bus])
        .args(args)
        .output()
        .unwrap()
}

fn reference_hello() -> Vec<f64> {
    let r = minilm_reference();
    let case = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == "hello")
        .unwrap()
        .clone();
    case["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn busctl_embed_as_documented() {
    let (_bus, _repo, d) = daemon();
    let v = busctl_json(&d.bus, "Embed", "sasa{sv}", &["minilm", "1", "hello", "0"]);
    assert_eq!(v["type"], "aad");
    let got: Vec<f64> = v["data"][0][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let want = reference_hello();
    assert_eq!(got.len(), 384);
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-4, "busctl embedding differs by {diff}");
}

#[test]
fn gdbus_embed_and_list_models() {
    let (_bus, _repo, d) = daemon();
    let out = gdbus_call(&d.bus, "Embed", &["minilm", "['hello']", "{}"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let first: f64 = text
        .trim_start_matches("([[")
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("unexpected gdbus output {text}"));
    assert!((first - reference_hello()[0]).abs() < 1e-4, "{first}");
    assert_eq!(
        text.matches(',').count(),
        383 + 1,
        "384 values and the tuple comma: {text}"
    );

    let out = gdbus_call(&d.bus, "ListModels", &[]);
    let text = stdout(&out);
    assert!(
        text.contains("'name': <'minilm'>") && text.contains("'state': <'ready'>"),
        "{text}"
    );
    assert!(text.contains("'provider': <'cpu'>"), "{text}");
}

#[test]
fn malformed_tensor_bytes_are_invalid_input() {
    let (_bus, _repo, d) = daemon();
    // Three float32 values need 12 bytes; send 4.
    let args = [
        "ops", "1", "a", "float32", "2", "1", "3", "4", "1", "2", "3", "4",
    ];
    let out = busctl_call(&d.bus, "Infer", "sa{s(satay)}", &args);
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("needs 12 bytes, got 4"),
        "{e}"
    );
    let args = ["ops", "1", "a", "complex128", "1", "1", "0"];
    let out = busctl_call(&d.bus, "Infer", "sa{s(satay)}", &args);
    assert!(stderr(&out).contains("unknown dtype"), "{}", stderr(&out));
}

#[test]
fn properties_and_errors_are_visible_to_busctl() {
    let (_bus, _repo, d) = daemon();
    let get = |p: &str| property(&d.bus, p);
    assert!(get("RuntimeVersion").contains("1.31.1"));
    assert!(get("Providers").contains("CPUExecutionProvider"));
    assert!(get("Version").contains(env!("CARGO_PKG_VERSION")));
    let out = busctl(
        &d,
        &[
            "call",
            "org.inferd.Inferd1",
            "/org/inferd/Inferd1",
            "org.inferd.Inferd1",
            "Embed",
            "sasa{sv}",
            "nosuch",
            "0",
            "0",
        ],
    );
    assert!(
        stderr(&out).contains("no model named \"nosuch\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn model_state_changes_are_signalled() {
    let (_bus, _repo, d) = daemon();
    let monitor = Monitor::start(&d.bus);
    assert!(inferctl(&d.bus, &["unload", "ops"]).status.success());
    assert!(inferctl(&d.bus, &["load", "ops"]).status.success());
    let text = monitor.stop_after("ModelStateChanged ('ops', 'ready')");
    let order: Vec<&str> = ["'unloaded'", "'loading'", "'ready'"]
        .into_iter()
        .filter(|s| text.contains(&format!("ModelStateChanged ('ops', {s})")))
        .collect();
    assert_eq!(order.len(), 3, "signals seen:\n{text}");
}
