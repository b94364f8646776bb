//! inferctl as scripts use it: where it finds the daemon, exit statuses by error class, JSON
//! errors, and input from stdin.

use std::process::{Command, Output};

use inferd_e2e::*;
use serde_json::Value;

fn daemon() -> (Bus, Repo, Daemon) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let d = Daemon::start(&bus, &repo);
    d.wait_settled();
    (bus, repo, d)
}

/// inferctl with no `--bus`, on these session and system buses.
fn inferctl_on(session: &str, system: &str, args: &[&str]) -> Output {
    Command::new(bin("inferctl"))
        .env_remove("INFERD_BUS")
        .env("DBUS_SESSION_BUS_ADDRESS", session)
        .env("DBUS_SYSTEM_BUS_ADDRESS", system)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn it_finds_the_daemon_on_the_session_bus_then_the_system_bus() {
    let (_bus, _repo, d) = daemon();
    let empty = Bus::start();
    let nowhere = "unix:path=/nonexistent/bus";
    let on_session = inferctl_on(&d.bus, &empty.address, &["models"]);
    assert!(on_session.status.success(), "{}", stderr(&on_session));
    assert!(stdout(&on_session).contains("minilm"));
    let on_system = inferctl_on(&empty.address, &d.bus, &["models"]);
    assert!(on_system.status.success(), "{}", stderr(&on_system));
    assert!(stdout(&on_system).contains("minilm"));
    // A session bus that could start inferd (the package's activation file) but does not run
    // it: the running daemon on the system bus wins.
    let services = tempfile::tempdir().unwrap();
    std::fs::write(
        services.path().join("org.inferd.Inferd1.service"),
        "[D-BUS Service]\nName=org.inferd.Inferd1\nExec=/bin/false\n",
    )
    .unwrap();
    let startable = Bus::with_policy(
        "session",
        &format!(
            "<servicedir>{}</servicedir><policy context=\"default\"><allow user=\"*\"/>\
             <allow own=\"*\"/><allow send_destination=\"*\" eavesdrop=\"true\"/>\
             <allow eavesdrop=\"true\"/></policy>",
            services.path().display()
        ),
    );
    let running_wins = inferctl_on(&startable.address, &d.bus, &["models"]);
    assert!(running_wins.status.success(), "{}", stderr(&running_wins));
    assert!(stdout(&running_wins).contains("minilm"));
    let neither = inferctl_on(&empty.address, nowhere, &["models"]);
    assert_eq!(neither.status.code(), Some(1));
    let e = stderr(&neither);
    assert!(
        e.contains("inferd is not running: not on the session bus, no system bus"),
        "{e}"
    );
    assert!(e.contains("systemctl --user start inferd"), "{e}");
}

#[test]
fn exit_statuses_follow_the_error_class_and_json_errors_are_json() {
    let (_bus, _repo, d) = daemon();
    assert_error(
        &inferctl(&d.bus, &["embed", "nosuch", "hi"]),
        "ModelNotFound",
    );
    let long = "word ".repeat(2000);
    assert_error(
        &inferctl(&d.bus, &["embed", "minilm", &long, "--no-truncate"]),
        "InvalidInput",
    );
    let usage = inferctl(&d.bus, &["nosuchcommand"]);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));

    let out = inferctl(&d.bus, &["--json", "embed", "nosuch", "hi"]);
    assert_eq!(out.status.code(), Some(3));
    let e: Value = serde_json::from_str(stderr(&out).trim()).expect("JSON on stderr");
    assert_eq!(e["error"]["name"], "ModelNotFound", "{e}");
    assert_eq!(e["error"]["exit"], 3, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("nosuch"),
        "{e}"
    );

    let help = stdout(&inferctl(&d.bus, &["--help"]));
    assert!(
        help.contains("5  overloaded or shutting down: retry later"),
        "{help}"
    );
}

#[test]
fn a_dash_reads_texts_from_stdin() {
    let (_bus, _repo, d) = daemon();
    let args = ["--json", "embed", "minilm", "hello", "good morning"];
    let direct = inferctl(&d.bus, &args);
    assert!(direct.status.success(), "{}", stderr(&direct));
    let piped = inferctl_with_input(
        &d.bus,
        &["--json", "embed", "minilm", "-"],
        "hello\n\ngood morning\n",
    );
    assert!(piped.status.success(), "{}", stderr(&piped));
    let vectors =
        |o: &Output| serde_json::from_slice::<Value>(&o.stdout).unwrap()["embeddings"].clone();
    assert_eq!(vectors(&piped).as_array().map(Vec::len), Some(2));
    assert_eq!(vectors(&piped), vectors(&direct));
}
