//! Calls the tests make as clients: D-Bus methods through busctl, `inferctl` as various users,
//! and reading what they printed.

use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::{bin, busctl_json, tests_dir, Daemon};

/// `ChatComplete` on `model` with one user message, through busctl; returns (text, info).
pub fn chat(d: &Daemon, model: &str, user: &str, opts: &[&str]) -> (String, Value) {
    let n = (opts.len() / 3).to_string();
    let mut args = vec![model, "1", "user", user, n.as_str()];
    args.extend(opts);
    let v = busctl_json(&d.bus, "ChatComplete", "sa(ss)a{sv}", &args);
    (
        v["data"][0].as_str().unwrap().to_owned(),
        v["data"][1].clone(),
    )
}

/// Sends `sig` to a child process.
pub fn send_signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
}

/// `Complete` on `model` through busctl; returns (text, info) from its JSON output.
pub fn complete(d: &Daemon, model: &str, prompt: &str, opts: &[&str]) -> (String, Value) {
    let n = (opts.len() / 3).to_string();
    let mut args = vec![model, prompt, n.as_str()];
    args.extend(opts);
    let v = busctl_json(&d.bus, "Complete", "ssa{sv}", &args);
    (
        v["data"][0].as_str().unwrap().to_owned(),
        v["data"][1].clone(),
    )
}

/// A string entry of an `a{sv}` info dict in busctl's JSON; empty when absent.
pub fn info_str(info: &Value, key: &str) -> String {
    info[key]["data"].as_str().unwrap_or_default().to_owned()
}

/// A numeric entry of an `a{sv}` info dict in busctl's JSON; -1 when absent.
pub fn info_num(info: &Value, key: &str) -> f64 {
    info[key]["data"].as_f64().unwrap_or(-1.0)
}

/// `setpriv` arguments that run a program as `uid`/`gid` with exactly the supplementary
/// `groups` (none: cleared).
pub fn setpriv(uid: u32, gid: u32, groups: &[u32]) -> Vec<String> {
    let list: Vec<String> = groups.iter().map(u32::to_string).collect();
    let groups = if groups.is_empty() {
        "--clear-groups".to_owned()
    } else {
        format!("--groups={}", list.join(","))
    };
    vec![
        "setpriv".into(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        groups,
    ]
}

/// `program` run through [`setpriv`].
pub fn as_user(
    uid: u32,
    gid: u32,
    groups: &[u32],
    program: impl AsRef<std::ffi::OsStr>,
) -> Command {
    let args = setpriv(uid, gid, groups);
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).arg(program);
    cmd
}

/// `inferctl` as `nobody` (uid and gid 65534, no groups): not root, not an admin.
pub fn inferctl_as_nobody(bus: &str, args: &[&str]) -> Output {
    as_user(65534, 65534, &[], bin("inferctl"))
        .args(["--bus", bus])
        .args(args)
        .output()
        .expect("run inferctl as nobody")
}

/// Runs `inferctl --bus ADDRESS ARGS...`.
pub fn inferctl(bus: &str, args: &[&str]) -> Output {
    Command::new(bin("inferctl"))
        .arg("--bus")
        .arg(bus)
        .args(args)
        .output()
        .expect("run inferctl")
}

/// Runs inferctl with `input` on its stdin (the chat REPL), waiting for it to exit.
pub fn inferctl_with_input(bus: &str, args: &[&str], input: &str) -> Output {
    inferctl_with_bytes(bus, args, input.as_bytes())
}

/// Runs inferctl with `input` on its stdin, waiting for it to exit.
pub fn inferctl_with_bytes(bus: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin("inferctl"))
        .arg("--bus")
        .arg(bus)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run inferctl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("inferctl output")
}

/// Starts inferctl without waiting, for concurrent and abandoned calls.
pub fn inferctl_spawn(bus: &str, args: &[&str]) -> Child {
    Command::new(bin("inferctl"))
        .arg("--bus")
        .arg(bus)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inferctl")
}

/// Collects a spawned child's output, reading it while the child runs (waiting first would
/// deadlock a child that writes more than a pipe holds).
pub fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses stdout as JSON, failing the test with stderr when the command failed.
pub fn json(o: &Output) -> Value {
    assert!(o.status.success(), "command failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(o)))
}

/// Asserts a failed inferctl call printed the given short error name.
pub fn assert_error(o: &Output, name: &str) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected {name}, but the call succeeded: {}",
        stdout(o)
    );
    // With --json the error is a JSON object; its message is what is returned.
    let (named, message) = match serde_json::from_str::<Value>(err.trim()) {
        Ok(v) => (
            v["error"]["name"] == name && v["error"]["exit"] == exit_status(name),
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        Err(_) => (err.starts_with(&format!("error: {name}: ")), err.clone()),
    };
    assert!(named, "expected {name}, got: {err}");
    assert_eq!(o.status.code(), Some(exit_status(name)), "{name}: {err}");
    message
}

/// inferctl's documented exit status for an error of this name (`inferctl --help`).
pub fn exit_status(name: &str) -> i32 {
    match name {
        "ModelNotFound" | "ModelNotReady" => 3,
        "InvalidInput" => 4,
        "Overloaded" | "ShuttingDown" => 5,
        "Timeout" => 6,
        "AccessDenied" => 7,
        _ => 1,
    }
}

/// The minilm reference fixture made by Python onnxruntime.
pub fn minilm_reference() -> Value {
    let text = std::fs::read_to_string(tests_dir().join("fixtures/minilm_reference.json"))
        .expect("fixture");
    serde_json::from_str(&text).expect("fixture json")
}

pub fn max_abs_diff(a: &Value, b: &Value) -> f64 {
    let a = a.as_array().expect("array");
    let b = b.as_array().expect("array");
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.as_f64().expect("num") - y.as_f64().expect("num")).abs())
        .fold(0.0, f64::max)
}

/// `inferctl import SOURCE --name NAME --models REPO FLAGS…` as the .deb runs it, with no Python
/// on PATH; fails the test unless it succeeds.
pub fn import_model(source: &std::path::Path, name: &str, repo: &std::path::Path, flags: &[&str]) {
    let out = Command::new(bin("inferctl"))
        .arg("import")
        .arg(source)
        .args(["--name", name, "--models"])
        .arg(repo)
        .args(flags)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", stderr(&out));
}
