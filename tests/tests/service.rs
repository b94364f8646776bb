//! The systemd contract, with this test playing systemd: a notification socket (`NOTIFY_SOCKET`),
//! the watchdog variables, SIGHUP and SIGTERM, and a journal socket.

use std::time::{Duration, Instant};

use inferd_e2e::notify::field;
use inferd_e2e::*;
use nix::sys::signal::Signal;

const WAIT: Duration = Duration::from_secs(60);

fn started(bus: &Bus, repo: &Repo, notify: &NotifySocket, config: &str) -> Daemon {
    Daemon::launch(
        bus,
        repo,
        Launch {
            config,
            env: &[("NOTIFY_SOCKET", notify.path())],
            ..Default::default()
        },
    )
}

#[test]
fn ready_status_reload_and_stop() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let mut notify = NotifySocket::new();
    let mut d = started(&bus, &repo, &notify, "");

    let ready = notify.wait_for(WAIT, |m| m.contains("READY=1"));
    let status = field(&ready, "STATUS").unwrap_or_default().to_owned();
    assert!(
        status.contains(&format!("D-Bus {}", bus.address)),
        "{status}"
    );
    // Readiness means "answers requests": the call works at once, even if a model still loads.
    assert!(inferctl(&d.bus, &["models"]).status.success());
    let serving = notify.wait_for(WAIT, |m| {
        field(m, "STATUS").is_some_and(|s| s.starts_with("serving 1 model ·"))
    });
    assert!(
        !serving.contains("READY=1"),
        "READY is sent once: {serving}"
    );

    // SIGHUP: a new model appears, the new config's admins apply, and readiness comes back.
    repo.add_minilm("second");
    std::fs::write(d.config_path(), "[dbus]\nadmin_uids = [65534]\n").unwrap();
    d.signal(Signal::SIGHUP);
    let reloading = notify.wait_for(WAIT, |m| m.contains("RELOADING=1"));
    let usec: u64 = field(&reloading, "MONOTONIC_USEC")
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .expect("a number");
    assert!(usec > 0);
    let ready = notify.wait_for(WAIT, |m| m.contains("READY=1"));
    assert_eq!(
        field(&ready, "STATUS"),
        Some(format!("serving 2 models · D-Bus {}", bus.address).as_str())
    );
    assert_eq!(d.models()["second"]["state"], "ready");
    let unload_as_nobody = inferctl_as_nobody(&d.bus, &["unload", "second"]);
    assert!(
        unload_as_nobody.status.success(),
        "the reloaded admin_uids apply: {}",
        stderr(&unload_as_nobody)
    );

    // A config that does not parse keeps the old one, and says so.
    std::fs::write(d.config_path(), "[dbus]\nadmin_uid = [1]\n").unwrap();
    d.signal(Signal::SIGHUP);
    let ready = notify.wait_for(WAIT, |m| m.contains("READY=1"));
    let status = field(&ready, "STATUS").unwrap();
    assert!(
        status.contains("reload failed, previous config kept")
            && status.contains("unknown field `admin_uid`"),
        "{status}"
    );
    assert!(d.log().contains("keeping the previous config"));
    assert!(inferctl(&d.bus, &["embed", "minilm", "still here"])
        .status
        .success());

    // Keys that need a restart are named, and kept.
    std::fs::write(
        d.config_path(),
        "[dbus]\nadmin_uids = [65534]\n[systemd]\nready_after_models = true\n",
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    let ready = notify.wait_for(WAIT, |m| m.contains("READY=1"));
    assert!(!ready.contains("reload failed"), "{ready}");
    assert!(d.log().contains("systemd changed; restart inferd"));

    let status = d.stop();
    assert!(status.success(), "{status:?}");
    notify.collect_for(Duration::from_millis(100));
    assert!(
        notify.seen.iter().any(|(_, m)| m.contains("STOPPING=1")),
        "{:?}",
        notify.seen
    );
}

#[test]
fn ready_after_models_waits_for_the_loads() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_llm("smollm2-fp32", "llm", "");
    repo.add_minilm("minilm");
    let mut notify = NotifySocket::new();
    let d = started(
        &bus,
        &repo,
        &notify,
        "[systemd]\nready_after_models = true\n",
    );
    notify.wait_for(WAIT, |m| field(m, "STATUS") == Some("loading models"));
    // A reload asked for while the models load runs after READY, not instead of waiting.
    d.signal(Signal::SIGHUP);
    let ready = notify.wait_for(WAIT, |m| m.contains("READY=1"));
    let models = d.models();
    for name in ["llm", "minilm"] {
        assert_eq!(models[name]["state"], "ready", "{ready}: {models}");
    }
    notify.wait_for(WAIT, |m| m.contains("RELOADING=1"));
    notify.wait_for(WAIT, |m| m.contains("READY=1"));
}

/// About 4.5 s of work for the `slow` test model.
const WEDGE_ITERS: u64 = 3_000_000;

/// A run past the model's `execution.max_run_ms` is a wedged worker (a legal long run within it
/// is not: `reliability.rs` R8 checks that).
#[test]
fn watchdog_pings_stop_while_a_worker_is_wedged() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_test_model(
        "slow",
        "slow",
        "kind = \"tensor\"\n[batching]\nmax_batch = 1\n[execution]\nmax_run_ms = 500\n",
    );
    let mut notify = NotifySocket::new();
    // systemd sets WATCHDOG_PID to the service's main pid; `exec` keeps the shell's.
    let d = Daemon::launch(
        &bus,
        &repo,
        Launch {
            env: &[
                ("NOTIFY_SOCKET", notify.path()),
                ("WATCHDOG_USEC", "1000000"),
            ],
            wrapper: &["sh", "-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""],
            ..Default::default()
        },
    );
    d.wait_settled();
    notify.wait_for(WAIT, |m| m.contains("READY=1"));
    // Idle workers answer every probe: pings keep coming.
    for _ in 0..3 {
        notify.wait_for(Duration::from_secs(3), |m| m.contains("WATCHDOG=1"));
    }

    let x = format!("x=float32:1x64:{}", vec!["0.1"; 64].join(","));
    let iters = format!("iters=int64:1:{WEDGE_ITERS}");
    let held = inferctl_spawn(&d.bus, &["infer", "slow", "--input", &x, "--input", &iters]);
    let status = notify.wait_for(WAIT, |m| {
        field(m, "STATUS").is_some_and(|s| s.contains("worker of slow not answering"))
    });
    let wedged_at = Instant::now();
    notify.collect_for(Duration::from_millis(1500));
    let pings_while_wedged = notify
        .seen
        .iter()
        .filter(|(t, m)| *t >= wedged_at && m.contains("WATCHDOG=1"))
        .count();
    assert_eq!(pings_while_wedged, 0, "{status}");
    assert!(finish(held).status.success());
    notify.wait_for(Duration::from_secs(5), |m| m.contains("WATCHDOG=1"));
    assert!(d.log().contains("does not answer its health probe"));
    assert!(d.log().contains("watchdog pings resume"));
}

/// journald's native protocol: `KEY=value\n`, or `KEY\n` + little-endian u64 length + bytes
/// + `\n` for values with newlines.
fn journal_fields(datagram: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            rest = &rest[(nl + 1).min(rest.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(rest[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &rest[nl + 9..nl + 9 + len];
            out.push((key, String::from_utf8_lossy(value).into_owned()));
            rest = &rest[(nl + 10 + len).min(rest.len())..];
        }
    }
    out
}

#[test]
fn logs_go_to_the_journal_with_fields_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    // The journal socket lives at a fixed path; a private mount namespace gives inferd ours.
    let journal = tempfile::tempdir().unwrap();
    std::fs::create_dir(journal.path().join("journal")).unwrap();
    let sock =
        std::os::unix::net::UnixDatagram::bind(journal.path().join("journal/socket")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let mount = format!(
        "mount --bind {} /run/systemd && exec \"$0\" \"$@\"",
        journal.path().display()
    );
    // systemd names the stream it connected to stderr; the log file stands in for it.
    let log = tempfile::NamedTempFile::new().unwrap();
    let meta = log.path().metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let d = Daemon::launch(
        &bus,
        &repo,
        Launch {
            env: &[("JOURNAL_STREAM", &stream)],
            wrapper: &[
                "unshare",
                "-m",
                "sh",
                "-c",
                &format!("exec 2>>{} && {mount}", log.path().display()),
            ],
            ..Default::default()
        },
    );
    d.wait_settled();
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 65536];
    let loaded = loop {
        assert!(Instant::now() < deadline, "no 'model loaded' entry");
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let fields = journal_fields(&buf[..n]);
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        if get("MESSAGE").as_deref() == Some("model loaded") {
            break fields;
        }
    };
    let get = |k: &str| loaded.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    assert_eq!(get("MODEL"), Some("minilm"), "{loaded:?}");
    assert_eq!(get("PROVIDER"), Some("cpu"), "{loaded:?}");
    assert_eq!(get("SYSLOG_IDENTIFIER"), Some("inferd"), "{loaded:?}");
    assert_eq!(get("PRIORITY"), Some("6"), "info is priority 6: {loaded:?}");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        !text.contains("model loaded"),
        "nothing goes to stderr as well: {text}"
    );
}
