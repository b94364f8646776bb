//! The introspection XML the .deb installs (packaging/dbus/org.inferd.Inferd1.xml) is the live
//! daemon's, every interface a client meets: the service, its ObjectManager, models and requests.
//! `make dbus-xml` rewrites the file through this test (INFERD_WRITE_DBUS_XML=1). A C client
//! made from the file by gdbus-codegen calls the real daemon.

use std::path::PathBuf;
use std::process::Command;

use inferd_e2e::*;

fn committed() -> PathBuf {
    tests_dir().join("../packaging/dbus/org.inferd.Inferd1.xml")
}

fn introspect(bus: &str, path: &str) -> String {
    let out = Command::new("busctl")
        .args(["--address", bus, "introspect", "--xml-interface"])
        .args(["org.inferd.Inferd1", path])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// The first `<interface name="NAME">` element in `xml`, from the start of its line.
fn interface(xml: &str, name: &str) -> String {
    let at = xml
        .find(&format!("<interface name=\"{name}\">"))
        .unwrap_or_else(|| panic!("no {name} in:\n{xml}"));
    let start = xml[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = at + xml[at..].find("</interface>").unwrap() + "</interface>".len();
    xml[start..end].to_owned()
}

#[test]
fn live_introspection_matches_the_committed_xml() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_endless_llm("endless", "");
    let d = Daemon::start(&bus, &repo);
    d.wait_settled();
    // A request object exists while its generation runs.
    let mut gen = inferctl_spawn(
        &d.bus,
        &["generate", "endless", "hi", "--max-tokens", "90000"],
    );
    let request = wait_request_object(&d.bus);
    let root = introspect(&d.bus, "/org/inferd/Inferd1");
    let model = introspect(&d.bus, "/org/inferd/Inferd1/models/minilm");
    let req = introspect(&d.bus, &request);
    gen.kill().unwrap();
    let _ = gen.wait();

    let live = format!(
        r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!-- Every interface of org.inferd.Inferd1: the service and its ObjectManager at
     /org/inferd/Inferd1, models at /org/inferd/Inferd1/models/<name>, requests and jobs at
     /org/inferd/Inferd1/request/<id>. Written from the running daemon by `make dbus-xml`;
     tests/tests/introspection.rs checks it. -->
<node>
{}
{}
{}
{}
</node>
"#,
        interface(&root, "org.inferd.Inferd1"),
        interface(&root, "org.freedesktop.DBus.ObjectManager"),
        interface(&model, "org.inferd.Inferd1.Model"),
        interface(&req, "org.inferd.Inferd1.Request"),
    );
    if std::env::var_os("INFERD_WRITE_DBUS_XML").is_some() {
        std::fs::write(committed(), &live).unwrap();
        eprintln!("wrote {}", committed().display());
        return;
    }
    let file = std::fs::read_to_string(committed()).unwrap();
    assert!(
        file == live,
        "the XML differs from the live daemon's; run `make dbus-xml`"
    );
}

#[test]
fn gdbus_codegen_makes_a_working_c_client() {
    let dir = tempfile::tempdir().unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };
    run(Command::new("gdbus-codegen")
        .args([
            "--interface-prefix",
            "org.inferd.",
            "--c-namespace",
            "Inferd",
        ])
        .args([
            "--generate-c-code",
            "inferd-generated",
            "--output-directory",
        ])
        .arg(dir.path())
        .arg(committed()));
    let flags = run(Command::new("pkg-config").args(["--cflags", "--libs", "gio-2.0"]));
    let exe = dir.path().join("client");
    run(Command::new("cc")
        .arg("-I")
        .arg(dir.path())
        .arg(tests_dir().join("codegen/main.c"))
        .arg(dir.path().join("inferd-generated.c"))
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace()));

    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let d = Daemon::start(&bus, &repo);
    d.wait_settled();
    let out = run(Command::new(&exe).arg(&d.bus));
    let line = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .to_owned()
    };
    assert_eq!(line("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(line("dims"), "384");
    let reference = minilm_reference();
    let hello = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["text"] == "hello")
        .unwrap();
    let want = hello["embedding"][0].as_f64().unwrap();
    let got: f64 = line("first").parse().unwrap();
    assert!((got - want).abs() < 1e-4, "{got} vs reference {want}");
    assert_eq!(line("state"), "ready");
    assert_eq!(line("kind"), "embedding");
    assert_eq!(line("error"), "org.inferd.Inferd1.Error.ModelNotFound");
}
