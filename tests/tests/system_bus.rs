//! The shipped system-bus policy (packaging/dbus/org.inferd.Inferd1.conf) and system user
//! (systemd/inferd.sysusers) on a private dbus-daemon configured like a distribution's system
//! bus: inferd runs as the `inferd` user, members of `inferd-clients` and root may call it,
//! everyone else (members of the daemon's own group `inferd` too) is refused by the bus itself,
//! and no other uid may take its name.
//!
//! Needs root (CI runs the tests as root): it creates the `inferd` user and group on the host
//! with systemd-sysusers and runs processes as other uids with setpriv.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use inferd_e2e::*;

/// `nobody`: called once with group `inferd-clients` as a supplementary group (a member), once
/// with the daemon's group `inferd`, and once without any group, so only the group decides. (dbus-daemon takes the caller's groups from the
/// socket, SO_PEERGROUPS, but refuses to authenticate a uid without a passwd entry: the uid must
/// be a real user.)
const NOBODY: u32 = 65534;
const MEMBER: u32 = NOBODY;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run command")
}

/// A dbus-daemon with the system bus's default policy (as in /usr/share/dbus-1/system.conf)
/// plus the shipped policy file.
fn system_bus(policy: &Path) -> Bus {
    Bus::with_policy(
        "system",
        &format!(
            r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <include>{}</include>"#,
            policy.display()
        ),
    )
}

/// Starts inferd as `uid`/`gid` (through setpriv) with a state directory that uid owns.
fn inferd_as(
    uid: u32,
    gid: u32,
    bus: &Bus,
    repo: &Repo,
    ort: &Path,
) -> (Daemon, tempfile::TempDir) {
    let state = shared_tempdir("inferd-state");
    std::os::unix::fs::chown(state.path(), Some(uid), Some(gid)).expect("chown state dir");
    let home = state.path().to_str().expect("utf-8 path");
    let wrapper = setpriv(uid, gid, &[]);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let d = Daemon::launch(
        bus,
        repo,
        Launch {
            wrapper: &wrapper,
            env: &[
                ("ORT_DYLIB_PATH", ort.to_str().expect("utf-8 path")),
                ("HOME", home),
                ("XDG_CACHE_HOME", home),
            ],
            state_dir: Some(state.path()),
            ..Default::default()
        },
    );
    (d, state)
}

/// `busctl call` of the bus driver (org.freedesktop.DBus) as root.
fn bus_driver(bus: &str, method: &str, signature: &str, args: &[&str]) -> Output {
    run(Command::new("busctl")
        .args(["--address", bus, "call"])
        .args([
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            method,
            signature,
        ])
        .args(args))
}

#[test]
fn the_shipped_policy_admits_root_and_group_inferd_clients_only() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "system_bus needs root: it creates the inferd system user (systemd-sysusers) and \
         runs inferd and inferctl as other uids (setpriv). Run it as root, as CI does."
    );
    let root = repo_root();
    let policy = root.join("packaging/dbus/org.inferd.Inferd1.conf");

    // The shipped system user, exactly as a package installs it.
    let out = run(Command::new("systemd-sysusers").arg(root.join("systemd/inferd.sysusers")));
    assert!(out.status.success(), "systemd-sysusers: {}", stderr(&out));
    let user = nix::unistd::User::from_name("inferd")
        .expect("getpwnam")
        .expect("systemd-sysusers did not create user inferd");
    let group = nix::unistd::Group::from_name("inferd")
        .expect("getgrnam")
        .expect("systemd-sysusers did not create group inferd");
    let (uid, daemon_gid) = (user.uid.as_raw(), group.gid.as_raw());
    assert_eq!(
        user.gid.as_raw(),
        daemon_gid,
        "inferd's primary group is inferd"
    );
    let gid = nix::unistd::Group::from_name("inferd-clients")
        .expect("getgrnam")
        .expect("systemd-sysusers did not create group inferd-clients")
        .gid
        .as_raw();
    assert_ne!(gid, daemon_gid, "clients have a group of their own");
    assert_ne!(uid, 0);
    assert_eq!(user.dir, Path::new("/var/lib/inferd"));

    let bus = system_bus(&policy);
    let addr = bus.address.as_str();

    // ONNX Runtime where every uid can read it (the cached copy lives under /root).
    let ort_dir = shared_tempdir("inferd-ort");
    let ort = ort_dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::copy(ort_library(), &ort).expect("copy ONNX Runtime");
    chmod(&ort, 0o644);

    let repo = Repo::new();
    repo.add_minilm("minilm");

    let (daemon, _state) = inferd_as(uid, daemon_gid, &bus, &repo, &ort);
    daemon.wait_settled();
    assert_eq!(
        daemon.models()["minilm"]["state"],
        "ready",
        "inferd as uid {uid} did not serve minilm; log:\n{}",
        daemon.log()
    );

    // The name belongs to the inferd user.
    let out = bus_driver(addr, "GetConnectionUnixUser", "s", &["org.inferd.Inferd1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("u {uid}"));

    let inferctl_bin = bin("inferctl");
    let inferctl_as = |uid: u32, groups: &[u32], args: &[&str]| {
        run(as_user(uid, uid, groups, &inferctl_bin)
            .args(["--bus", addr])
            .args(args))
    };

    // Root and a member of group inferd-clients may call.
    let out = inferctl(addr, &["--json", "embed", "minilm", "hello"]);
    assert!(out.status.success(), "root: {}", stderr(&out));
    let out = inferctl_as(MEMBER, &[gid], &["--json", "embed", "minilm", "hello"]);
    assert!(out.status.success(), "group member: {}", stderr(&out));
    assert_eq!(
        json(&out)["embeddings"][0].as_array().map(Vec::len),
        Some(384),
        "{}",
        stdout(&out)
    );
    // ... including the standard interfaces (properties, the object manager, introspection,
    // ping) and the model objects.
    for args in [
        &[
            "get-property",
            "org.inferd.Inferd1",
            "/org/inferd/Inferd1/models/minilm",
            "org.inferd.Inferd1.Model",
            "State",
        ][..],
        &[
            "call",
            "org.inferd.Inferd1",
            "/org/inferd/Inferd1",
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
        ],
        &[
            "get-property",
            "org.inferd.Inferd1",
            "/org/inferd/Inferd1",
            "org.inferd.Inferd1",
            "Version",
        ][..],
        &["introspect", "org.inferd.Inferd1", "/org/inferd/Inferd1"],
        &[
            "call",
            "org.inferd.Inferd1",
            "/org/inferd/Inferd1",
            "org.freedesktop.DBus.Peer",
            "Ping",
        ],
    ] {
        let out = run(as_user(MEMBER, MEMBER, &[gid], "busctl")
            .args(["--address", addr])
            .args(args));
        assert!(
            out.status.success(),
            "group member, busctl {args:?}: {}",
            stderr(&out)
        );
    }
    // The bus lets a member's management call through; the daemon refuses it itself.
    let out = inferctl_as(MEMBER, &[gid], &["unload", "minilm"]);
    let err = assert_error(&out, "AccessDenied");
    assert!(err.contains(&format!("uid {MEMBER}")), "{err}");

    // Anyone else is refused by the bus, before the daemon sees the call: a member of the
    // daemon's own group too (it owns the model repository, it is not a client group).
    for groups in [&[][..], &[daemon_gid]] {
        let out = inferctl_as(NOBODY, groups, &["embed", "minilm", "hello"]);
        let err = assert_error(&out, "AccessDenied");
        assert!(
            err.contains("Rejected send message"),
            "groups {groups:?}: not the bus's refusal: {err}"
        );
    }
    let out = run(as_user(NOBODY, NOBODY, &[], "gdbus")
        .args(["call", "--address", addr, "--dest", "org.inferd.Inferd1"])
        .args(["--object-path", "/org/inferd/Inferd1"])
        .args(["--method", "org.inferd.Inferd1.ListModels"]));
    assert!(
        !out.status.success(),
        "uid {NOBODY} listed models: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("org.freedesktop.DBus.Error.AccessDenied")
            && err.contains("Rejected send message"),
        "expected the bus's AccessDenied, got: {err}"
    );
    assert!(!err.contains("org.inferd.Inferd1.Error"), "{err}");

    // Request objects (org.inferd.Inferd1.Request, Cancel): the bus passes a member's call on
    // (the daemon answers that no such request exists) and refuses anyone else's.
    let cancel = |groups: &[u32]| {
        let out = run(as_user(NOBODY, NOBODY, groups, "gdbus")
            .args(["call", "--address", addr, "--dest", "org.inferd.Inferd1"])
            .args(["--object-path", "/org/inferd/Inferd1/request/nosuch"])
            .args(["--method", "org.inferd.Inferd1.Request.Cancel"]));
        assert!(!out.status.success(), "cancelled nothing: {}", stdout(&out));
        stderr(&out)
    };
    let err = cancel(&[gid]);
    assert!(!err.contains("Rejected send message"), "{err}");
    let err = cancel(&[]);
    assert!(
        err.contains("org.freedesktop.DBus.Error.AccessDenied")
            && err.contains("Rejected send message"),
        "{err}"
    );

    // No other uid may own the name: RequestName is refused by policy...
    let out = run(as_user(NOBODY, NOBODY, &[gid], "gdbus")
        .args(["call", "--address", addr, "--dest", "org.freedesktop.DBus"])
        .args(["--object-path", "/org/freedesktop/DBus"])
        .args(["--method", "org.freedesktop.DBus.RequestName"])
        .args(["org.inferd.Inferd1", "4"]));
    assert!(
        !out.status.success(),
        "uid {NOBODY} got the name: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("org.freedesktop.DBus.Error.AccessDenied")
            && err.contains("not allowed to own the service \"org.inferd.Inferd1\""),
        "{err}"
    );
    // ... so a second inferd started as that uid fails with an error about the name.
    let (mut intruder, _intruder_state) = inferd_as(NOBODY, NOBODY, &bus, &repo, &ort);
    let status = intruder.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "inferd as uid {NOBODY} started");
    let log = intruder.log();
    assert!(
        log.contains("org.inferd.Inferd1") && log.contains("not allowed to own"),
        "{log}"
    );

    // The real daemon kept its name and still answers.
    let out = bus_driver(addr, "GetConnectionUnixUser", "s", &["org.inferd.Inferd1"]);
    assert_eq!(stdout(&out).trim(), format!("u {uid}"));
    let out = inferctl(addr, &["embed", "minilm", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(daemon);
}
