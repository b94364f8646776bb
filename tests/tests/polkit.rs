//! polkit decides who may manage models where it runs on the daemon's bus; the `[dbus]` rules
//! decide where it does not. polkit here is `inferd_e2e::polkit::MockPolkit`, a stand-in
//! authority on the private bus (see its docs for why not a real polkitd).

use std::process::Command;

use inferd_e2e::polkit::{Check, MockPolkit};
use inferd_e2e::*;

const MANAGE: &str = "org.inferd.Inferd1.manage-models";
const WARMUP: &str = "org.inferd.Inferd1.warmup";

#[test]
fn polkit_decides_management_and_the_admin_rules_are_the_fallback() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let polkit = MockPolkit::start(
        &bus.address,
        &[(WARMUP, true, false), (MANAGE, false, true)],
    );
    // nobody is an admin by the [dbus] rules, which do not count while polkit answers.
    let d = Daemon::start_with(&bus, &repo, "[dbus]\nadmin_uids = [65534]\n");
    d.wait_settled();

    let out = inferctl_as_nobody(&d.bus, &["warmup", "minilm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = inferctl_as_nobody(&d.bus, &["unload", "minilm"]);
    let msg = assert_error(&out, "AccessDenied");
    assert!(
        msg.contains(&format!("polkit did not authorize {MANAGE} for uid 65534"))
            && msg.contains("password"),
        "{msg}"
    );
    let calls = polkit.calls();
    assert_eq!(
        calls.iter().map(|c| c.action.as_str()).collect::<Vec<_>>(),
        [WARMUP, MANAGE]
    );
    for c in &calls {
        assert_eq!(c.subject_kind, "system-bus-name");
        assert!(c.subject_name.starts_with(':'), "{c:?}");
        // inferctl lets polkit ask an agent for a password.
        assert_eq!(c.flags, 1, "{c:?}");
    }

    // A caller that does not allow interactive authorization is asked about without it.
    let out = as_user(65534, 65534, &[], "busctl")
        .args([
            "--address",
            &d.bus,
            "--allow-interactive-authorization=no",
            "call",
        ])
        .args([
            "org.inferd.Inferd1",
            "/org/inferd/Inferd1",
            "org.inferd.Inferd1",
        ])
        .args(["StartReload", "a{sv}", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("polkit did not authorize"),
        "{}",
        stderr(&out)
    );
    let last: Check = polkit.calls().pop().unwrap();
    assert_eq!((last.action.as_str(), last.flags), (MANAGE, 0));

    // Root and the daemon's own uid are never asked about.
    let out = inferctl(&d.bus, &["unload", "minilm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(polkit.calls().len(), 3);

    // Without polkit on the bus, the [dbus] rules decide: nobody is in admin_uids.
    drop(polkit);
    let out = inferctl_as_nobody(&d.bus, &["load", "minilm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new("busctl")
        .args(["--address", &d.bus, "status", "org.freedesktop.PolicyKit1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the mock authority is gone");
}

#[test]
fn polkit_can_be_turned_off() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let polkit = MockPolkit::start(&bus.address, &[(MANAGE, false, false)]);
    let d = Daemon::start_with(
        &bus,
        &repo,
        "[dbus]\nadmin_uids = [65534]\npolkit = false\n",
    );
    d.wait_settled();
    let out = inferctl_as_nobody(&d.bus, &["unload", "minilm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(polkit.calls().is_empty());
    // Without polkit's say, someone outside the rules (uid 1, `daemon`) is still refused.
    let out = as_user(1, 1, &[], bin("inferctl"))
        .args(["--bus", &d.bus, "load", "minilm"])
        .output()
        .unwrap();
    let msg = assert_error(&out, "AccessDenied");
    assert!(msg.contains("uid 1 is not root"), "{msg}");
}

#[test]
fn a_polkit_that_is_not_root_is_not_trusted() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    // On a bus whose policy lets anyone own the name, nobody poses as polkit and says yes.
    let impostor = MockPolkit::start_as(&bus.address, &[(MANAGE, true, false)], Some(65534));
    let d = Daemon::start_with(&bus, &repo, "[dbus]\nadmin_uids = [65534]\n");
    d.wait_settled();
    let out = inferctl_as_nobody(&d.bus, &["unload", "minilm"]);
    let msg = assert_error(&out, "AccessDenied");
    assert!(
        msg.contains("org.freedesktop.PolicyKit1 is owned by uid 65534, not root"),
        "{msg}"
    );
    assert!(impostor.calls().is_empty(), "the impostor was never asked");
}
