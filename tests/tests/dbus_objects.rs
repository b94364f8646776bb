//! Models and requests as D-Bus objects under the root's ObjectManager, their
//! PropertiesChanged, and the background (job) forms of the long calls, seen through busctl,
//! gdbus and inferd-client.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use inferd_client::stream::{Input, Stream, StreamEvent};
use inferd_client::Inferd1Proxy;
use inferd_e2e::*;
use zbus::zvariant::{OwnedValue, Value};

fn busctl(bus: &str, args: &[&str]) -> String {
    let out = Command::new("busctl")
        .args(["--address", bus])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "busctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// A method of inferd's object, which must succeed; its reply as busctl prints it.
fn call(bus: &str, method: &str, signature: &str, args: &[&str]) -> String {
    let out = busctl_call(bus, method, signature, args);
    assert!(out.status.success(), "{method}: {}", stderr(&out));
    stdout(&out)
}

fn model_property(bus: &str, model: &str, name: &str) -> String {
    let path = inferd_client::names::model_path(model);
    busctl(
        bus,
        &[
            "get-property",
            "org.inferd.Inferd1",
            &path,
            "org.inferd.Inferd1.Model",
            name,
        ],
    )
    .trim()
    .to_owned()
}

/// minilm and an endless text-generation model, both ready.
fn daemon() -> (Bus, Repo, Daemon) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_endless_llm("tiny-gen", "");
    let d = Daemon::start(&bus, &repo);
    d.wait_settled();
    (bus, repo, d)
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn models_and_requests_are_objects_under_the_object_manager() {
    let (_bus, repo, d) = daemon();

    let paths = object_paths(&d.bus);
    for p in [
        "/org/inferd/Inferd1/models/minilm",
        "/org/inferd/Inferd1/models/tiny_2dgen",
    ] {
        assert!(paths.iter().any(|l| l == p), "{p} not in {paths:?}");
    }
    // The model object's properties are its ListModels entry.
    assert_eq!(model_property(&d.bus, "minilm", "State"), "s \"ready\"");
    assert_eq!(model_property(&d.bus, "minilm", "Kind"), "s \"embedding\"");
    assert_eq!(model_property(&d.bus, "tiny-gen", "Name"), "s \"tiny-gen\"");
    let row = d.models()["minilm"].clone();
    // Absent from the entry (loads overlapped) reads as 0.
    let memory = row["memory_bytes"].as_u64().unwrap_or(0);
    assert_eq!(model_property(&d.bus, "minilm", "MemoryPool"), "s \"host\"");
    assert_eq!(
        model_property(&d.bus, "minilm", "Note"),
        format!("s {}", row["note"])
    );
    assert_eq!(
        model_property(&d.bus, "minilm", "MemoryBytes"),
        format!("t {memory}")
    );
    let managed = Command::new("gdbus")
        .args(["call", "--address", &d.bus, "--dest", "org.inferd.Inferd1"])
        .args(["--object-path", "/org/inferd/Inferd1", "--method"])
        .arg("org.freedesktop.DBus.ObjectManager.GetManagedObjects")
        .output()
        .unwrap();
    let managed = stdout(&managed);
    assert!(
        managed.contains("'/org/inferd/Inferd1/models/minilm': {'org.inferd.Inferd1.Model': {")
            && managed.contains("'State': <'ready'>"),
        "{managed}"
    );

    let monitor = Monitor::start(&d.bus);
    // A streaming generation is a request object while it runs.
    let mut gen = inferctl_spawn(
        &d.bus,
        &["generate", "tiny-gen", "hello", "--max-tokens", "90000"],
    );
    let request = wait_request_object(&d.bus);
    let xml = busctl(
        &d.bus,
        &[
            "introspect",
            "--xml-interface",
            "org.inferd.Inferd1",
            &request,
        ],
    );
    assert!(
        xml.contains("<interface name=\"org.inferd.Inferd1.Request\">"),
        "{xml}"
    );
    assert_eq!(
        busctl(
            &d.bus,
            &[
                "get-property",
                "org.inferd.Inferd1",
                &request,
                "org.inferd.Inferd1.Request",
                "State"
            ]
        )
        .trim(),
        "s \"running\""
    );
    gen.kill().unwrap();
    let _ = gen.wait();
    wait_until("the request object to go", || {
        !object_paths(&d.bus).contains(&request)
    });

    // Unloading changes the model object's State; a new model is added, a removed one goes.
    call(&d.bus, "UnloadModel", "s", &["minilm"]);
    repo.add_minilm("extra");
    call(&d.bus, "Reload", "", &[]);
    assert!(object_paths(&d.bus).contains(&"/org/inferd/Inferd1/models/extra".to_owned()));
    std::fs::remove_dir_all(repo.path().join("extra")).unwrap();
    call(&d.bus, "Reload", "", &[]);
    let seen = monitor.stop_after(
        "/org/inferd/Inferd1: org.freedesktop.DBus.ObjectManager.InterfacesRemoved (objectpath '/org/inferd/Inferd1/models/extra'",
    );
    let at = |needle: &str| {
        seen.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not signalled:\n{seen}"))
    };
    let added = at(&format!(
        "InterfacesAdded (objectpath '{request}', {{'org.inferd.Inferd1.Request': {{'State': <'running'>}}}})"
    ));
    let cancelled = at(&format!(
        "{request}: org.freedesktop.DBus.Properties.PropertiesChanged ('org.inferd.Inferd1.Request', {{'State': <'cancelled'>}}, @as [])"
    ));
    let removed = at(&format!(
        "InterfacesRemoved (objectpath '{request}', ['org.inferd.Inferd1.Request'])"
    ));
    assert!(added < cancelled && cancelled < removed, "{seen}");
    at("/org/inferd/Inferd1/models/minilm: org.freedesktop.DBus.Properties.PropertiesChanged ('org.inferd.Inferd1.Model', {");
    at("'State': <'unloaded'>");
    at("InterfacesAdded (objectpath '/org/inferd/Inferd1/models/extra', {'org.inferd.Inferd1.Model': {");
    // The compatibility signal still comes.
    at("org.inferd.Inferd1.ModelStateChanged ('minilm', 'unloaded')");
}

#[test]
fn long_calls_have_background_forms_that_return_at_once() {
    let (_bus, _repo, d) = daemon();

    // busctl gets the job's object at once; the load goes on after busctl has left.
    let monitor = Monitor::start(&d.bus);
    let reply = call(
        &d.bus,
        "StartLoadModel",
        "sa{sv}",
        &["minilm", "1", "handle_token", "s", "load1"],
    );
    let path = reply
        .trim()
        .trim_start_matches("o ")
        .trim_matches('"')
        .to_owned();
    assert!(
        path.starts_with("/org/inferd/Inferd1/request/") && path.ends_with("_load1"),
        "{reply}"
    );
    let seen = monitor.stop_after(&format!("InterfacesRemoved (objectpath '{path}'"));
    assert!(
        seen.contains(&format!(
            "{path}: org.freedesktop.DBus.Properties.PropertiesChanged ('org.inferd.Inferd1.Request', {{'State': <'finished'>}}, @as [])"
        )),
        "{seen}"
    );

    // inferctl waits for the job's signal: success, and a typed failure.
    let out = inferctl(&d.bus, &["load", "minilm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = inferctl(&d.bus, &["--json", "warmup", "minilm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)[0]["state"], "ready", "{}", stdout(&out));
    assert_error(&inferctl(&d.bus, &["load", "nosuch"]), "ModelNotFound");
    let bad = busctl_call(&d.bus, "StartReload", "a{sv}", &["1", "priority", "s", "x"]);
    assert!(
        stderr(&bad).contains("unknown option \"priority\""),
        "{}",
        stderr(&bad)
    );

    // Generate is Complete's background form: Finished carries the whole text.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = zbus::connection::Builder::address(d.bus.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let opts = || {
            HashMap::from([
                ("max_tokens", Value::from(24u32)),
                ("temperature", Value::from(0.0f64)),
            ])
        };
        let (text, _) = Inferd1Proxy::new(&conn)
            .await
            .unwrap()
            .complete("tiny-gen", "Once upon a time", opts())
            .await
            .unwrap();
        let mut stream =
            Stream::start(&conn, "tiny-gen", Input::Prompt("Once upon a time"), opts())
                .await
                .unwrap();
        let mut deltas = String::new();
        let info: HashMap<String, OwnedValue> = loop {
            match stream.next().await.expect("an event") {
                StreamEvent::Delta { text, .. } => deltas.push_str(&text),
                StreamEvent::Finished { info, .. } => break info,
                StreamEvent::Failed { name, message } => panic!("{name}: {message}"),
            }
        };
        let content = String::try_from(info["content"].try_clone().unwrap()).unwrap();
        assert!(!text.is_empty());
        assert_eq!(content, text);
        assert_eq!(deltas, text);
    });
}
