//! Admission, deadlines and abandoned callers, with a model whose run time the test chooses.

use std::time::Duration;

use inferd_e2e::*;

/// About 1.5 s of work on these machines (a Loop of MatMul + Tanh).
const HOLD_ITERS: u64 = 1_000_000;

fn slow_manifest(queue: usize, extra: &str) -> String {
    format!("kind = \"tensor\"\n[batching]\nmax_batch = 1\nqueue = {queue}\n{extra}\n")
}

fn slow_args(iters: u64) -> Vec<String> {
    let x = format!("x=float32:1x64:{}", vec!["0.1"; 64].join(","));
    [
        "--json",
        "infer",
        "slow",
        "--input",
        &x,
        "--input",
        &format!("iters=int64:1:{iters}"),
    ]
    .map(String::from)
    .to_vec()
}

fn spawn_slow(d: &Daemon, iters: u64) -> std::process::Child {
    let args = slow_args(iters);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    inferctl_spawn(&d.bus, &refs)
}

fn start(manifest: &str) -> (Bus, Repo, Daemon) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_test_model("slow", "slow", manifest);
    let d = Daemon::start(&bus, &repo);
    (bus, repo, d)
}

#[test]
fn a_full_queue_answers_overloaded_at_once() {
    let (_bus, _repo, d) = start(&slow_manifest(1, ""));
    let children: Vec<_> = (0..6).map(|_| spawn_slow(&d, HOLD_ITERS)).collect();
    let outs: Vec<_> = children.into_iter().map(finish).collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    let overloaded: Vec<_> = outs
        .iter()
        .filter(|o| {
            // With --json the error is JSON on stderr; either way the status says "retry".
            let e: serde_json::Value = serde_json::from_str(stderr(o).trim()).unwrap_or_default();
            e["error"]["name"] == "Overloaded" && o.status.code() == Some(exit_status("Overloaded"))
        })
        .collect();
    assert!(ok >= 1, "nothing succeeded");
    assert!(!overloaded.is_empty(), "no request was refused");
    assert_eq!(
        ok + overloaded.len(),
        6,
        "other errors: {:?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    assert!(
        stderr(overloaded[0]).contains("queue of 1 is full"),
        "{}",
        stderr(overloaded[0])
    );
    assert_eq!(d.models()["slow"]["rejected"], overloaded.len() as u64);
}

/// Polls `ListModels` until `check` holds for the model's row, or fails after 10 s.
fn wait_for(d: &Daemon, model: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = d.models()[model].clone();
        if check(&m) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached: {m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn requests_past_their_deadline_fail_with_timeout_running_or_queued() {
    let (_bus, _repo, d) = start(&slow_manifest(4, "timeout_ms = 300"));
    let busy = spawn_slow(&d, HOLD_ITERS);
    wait_for(&d, "slow", |m| m["active"] == 1);
    let late = finish(spawn_slow(&d, 10));
    let e = assert_error(&late, "Timeout");
    assert!(e.contains("past its deadline"), "{e}");
    // The running request's answer would come too late as well.
    assert_error(&finish(busy), "Timeout");
    // The queued one never ran: the worker counted it as timed out when it got to it.
    wait_for(&d, "slow", |m| m["timed_out"] == 1 && m["served"] == 1);
}

#[test]
fn a_request_whose_caller_left_is_skipped() {
    let (_bus, _repo, d) = start(&slow_manifest(4, ""));
    let busy = spawn_slow(&d, HOLD_ITERS);
    wait_for(&d, "slow", |m| m["active"] == 1);
    let mut gone = spawn_slow(&d, HOLD_ITERS);
    // The second request queues behind the first.
    wait_for(&d, "slow", |m| m["queue_depth"] == 1);
    gone.kill().unwrap();
    gone.wait().unwrap();
    assert!(finish(busy).status.success());
    // The abandoned request never ran: one served, one skipped.
    wait_for(&d, "slow", |m| m["skipped"] == 1 && m["served"] == 1);
}

#[test]
fn sigterm_answers_accepted_requests_then_exits_cleanly() {
    let (_bus, _repo, mut d) = start(&slow_manifest(4, ""));
    let busy = spawn_slow(&d, HOLD_ITERS);
    wait_for(&d, "slow", |m| m["active"] == 1);
    let queued = spawn_slow(&d, 10);
    wait_for(&d, "slow", |m| m["queue_depth"] == 1);
    let status = d.stop();
    assert!(status.success(), "exit status {status}");
    let busy = finish(busy);
    assert!(busy.status.success(), "{}", stderr(&busy));
    let queued = finish(queued);
    assert!(queued.status.success(), "{}", stderr(&queued));
}
