//! The OpenAI-compatible HTTP API (docs/http.md), end to end: the official `openai` Python
//! client, unchanged, drives a real inferd (tests/openai/test_openai_client.py); curl checks
//! what a client library hides: the unix socket's permissions, the bearer token, and refusals
//! at start.

use std::process::Command;
use std::time::Duration;

use inferd_e2e::*;

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_owned(), code.to_owned())
}

#[test]
fn the_openai_client_works_unchanged() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_llm("smollm2-fp32", "smollm2-fp32", "");
    repo.add_endless_llm("tiny", "max_sequences = 1\n[batching]\nqueue = 1\n");
    repo.add_llm("think", "think", "");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("http.sock");
    let port = free_port();
    let d = Daemon::start_with(
        &bus,
        &repo,
        &format!(
            "[http]\nlisten = [\"127.0.0.1:{port}\", \"unix:{}\"]\n",
            sock.display()
        ),
    );
    d.wait_settled();
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(tests_dir().join("openai"))
        .env("INFERD_HTTP_URL", format!("http://127.0.0.1:{port}"))
        .env("INFERD_HTTP_SOCKET", &sock)
        .env(
            "INFERD_THINK_SCRIPT",
            test_models().join("think/script.json"),
        )
        .output()
        .expect("pytest");
    assert!(
        out.status.success(),
        "{}{}\ndaemon log:\n{}",
        stdout(&out),
        stderr(&out),
        d.log()
    );
    // The default socket mode lets the daemon's user and group in, nobody else.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let (body, code) = curl(&[
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://inferd/v1/models",
    ]);
    assert_eq!(code, "200", "{body}");
}

#[test]
fn tcp_needs_the_token_and_remote_needs_allow_remote() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let port = free_port();
    let d = Daemon::start_with(
        &bus,
        &repo,
        &format!(
            "[http]\nlisten = [\"127.0.0.1:{port}\"]\ntoken_file = \"{}\"\nmax_body_bytes = 1000\n",
            token.display()
        ),
    );
    let url = format!("http://127.0.0.1:{port}/v1/models");
    let (body, code) = curl(&[&url]);
    assert_eq!(code, "401", "{body}");
    assert!(body.contains("authentication_error"), "{body}");
    let (_, code) = curl(&["-H", "Authorization: Bearer wrong-token!", &url]);
    assert_eq!(code, "401");
    let (body, code) = curl(&["-H", "Authorization: Bearer s3cret-token", &url]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"minilm\""), "{body}");
    assert!(
        !d.log().contains("s3cret"),
        "the token must never be logged"
    );
    let big = format!(
        "{{\"model\": \"minilm\", \"input\": \"{}\"}}",
        "x".repeat(2000)
    );
    let (body, code) = curl(&[
        "-H",
        "Authorization: Bearer s3cret-token",
        "-H",
        "Content-Type: application/json",
        "-d",
        &big,
        &url.replace("models", "embeddings"),
    ]);
    assert_eq!(code, "413", "{body}");
    assert!(body.contains("invalid_request_error"), "{body}");
    drop(d);

    for (config, needle) in [
        ("listen = [\"0.0.0.0:1\"]\n", "set http.allow_remote = true"),
        (
            "listen = [\"0.0.0.0:1\"]\nallow_remote = true\n",
            "http.allow_remote needs http.token_file",
        ),
    ] {
        let mut d = Daemon::launch(
            &bus,
            &repo,
            Launch {
                config: &format!("[http]\n{config}"),
                ..Default::default()
            },
        );
        assert!(!d.wait_exit(Duration::from_secs(20)).success());
        assert!(d.log().contains(needle), "{}", d.log());
    }
}
