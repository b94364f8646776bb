//! Loading, failing, unloading and reloading models; providers; who may manage them.

use inferd_e2e::*;

const OPS: &str = "kind = \"tensor\"\n";

#[test]
fn a_broken_model_fails_alone_and_unsafe_paths_are_refused() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.write("corrupt", "model.onnx", b"this is not an onnx file");
    repo.write("corrupt", "model.toml", OPS);
    repo.write(
        "escape",
        "model.toml",
        "kind = \"tensor\"\nfile = \"../minilm/model.onnx\"\n",
    );
    repo.write(
        "link",
        "model.toml",
        "kind = \"tensor\"\nfile = \"model.onnx\"\n",
    );
    std::os::unix::fs::symlink(
        repo.path().join("minilm/model.onnx"),
        repo.path().join("link/model.onnx"),
    )
    .unwrap();
    repo.write(
        "typo",
        "model.toml",
        "kind = \"tensor\"\nfiel = \"model.onnx\"\n",
    );
    repo.write("Bad-Name", "model.toml", OPS);
    let d = Daemon::start(&bus, &repo);
    let m = d.models();

    assert_eq!(m["minilm"]["state"], "ready");
    for name in ["corrupt", "escape", "link", "typo", "Bad-Name"] {
        assert_eq!(m[name]["state"], "failed", "{name}: {}", m[name]);
    }
    let err = |n: &str| m[n]["error"].as_str().unwrap().to_owned();
    assert!(
        err("corrupt").contains("not a readable ONNX model"),
        "{}",
        err("corrupt")
    );
    assert!(
        err("escape").contains("may not contain `..`"),
        "{}",
        err("escape")
    );
    assert!(
        err("link").contains("outside the model folder"),
        "{}",
        err("link")
    );
    assert!(
        err("typo").contains("fiel") && err("typo").contains("line 2"),
        "{}",
        err("typo")
    );
    assert!(
        err("Bad-Name").contains("not a valid model name"),
        "{}",
        err("Bad-Name")
    );

    let e = assert_error(
        &inferctl(&d.bus, &["infer", "corrupt", "--input", "x=uint8:1:1"]),
        "ModelNotReady",
    );
    assert!(e.contains("failed"), "{e}");
    assert!(inferctl(&d.bus, &["embed", "minilm", "still serving"])
        .status
        .success());
}

#[test]
fn unload_load_and_reload_keep_serving_what_works() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let d = Daemon::start(&bus, &repo);

    assert!(inferctl(&d.bus, &["unload", "minilm"]).status.success());
    assert_eq!(d.models()["minilm"]["state"], "unloaded");
    assert_error(
        &inferctl(&d.bus, &["embed", "minilm", "x"]),
        "ModelNotReady",
    );
    assert!(inferctl(&d.bus, &["load", "minilm"]).status.success());
    assert_eq!(d.models()["minilm"]["state"], "ready");
    assert_error(&inferctl(&d.bus, &["load", "nosuch"]), "ModelNotFound");

    // A new model appears on reload.
    repo.add_test_model("ops", "ops", OPS);
    assert!(inferctl(&d.bus, &["reload"]).status.success());
    assert_eq!(d.models()["ops"]["state"], "ready");

    // A broken new version keeps the old one serving.
    repo.write("minilm", "model.onnx", b"truncated garbage");
    assert!(inferctl(&d.bus, &["reload"]).status.success());
    let m = &d.models()["minilm"];
    assert_eq!(m["state"], "ready", "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .contains("previous version keeps serving"),
        "{m}"
    );
    assert!(inferctl(&d.bus, &["embed", "minilm", "still here"])
        .status
        .success());

    // A removed model is unloaded.
    std::fs::remove_dir_all(repo.path().join("ops")).unwrap();
    assert!(inferctl(&d.bus, &["reload"]).status.success());
    assert!(d.models().get("ops").is_none());
}

#[test]
fn gpu_providers_that_fail_are_reported_and_require_gpu_fails_the_load() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_test_model(
        "ops",
        "fallback",
        "kind = \"tensor\"\n[execution]\nproviders = [\"tensorrt\", \"cuda\", \"cpu\"]\n",
    );
    repo.add_test_model(
        "ops",
        "gpu-only",
        "kind = \"tensor\"\n[execution]\nproviders = [\"cuda\", \"cpu\"]\nrequire_gpu = true\n",
    );
    let d = Daemon::start(&bus, &repo);
    let m = d.models();

    let fb = &m["fallback"];
    assert_eq!(
        (fb["state"].as_str(), fb["provider"].as_str()),
        (Some("ready"), Some("cpu")),
        "{fb}"
    );
    let note = fb["note"].as_str().unwrap();
    assert!(
        note.contains("tensorrt: ") && note.contains("cuda: "),
        "{note}"
    );
    let log = d.log();
    assert!(
        log.contains("provider did not register"),
        "the fallback must be logged"
    );
    // stderr is a file here, as when `make run` is piped into one: no colour codes in it.
    assert!(!log.contains('\x1b'), "ANSI escapes in a log file: {log:?}");

    let g = &m["gpu-only"];
    assert_eq!(g["state"], "failed", "{g}");
    let e = g["error"].as_str().unwrap();
    assert!(e.contains("require_gpu") && e.contains("CUDA"), "{e}");
}

#[test]
fn management_needs_an_admin_and_inference_does_not() {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    let d = Daemon::start(&bus, &repo);
    let as_nobody = |args: &[&str]| inferctl_as_nobody(&d.bus, args);
    for args in [&["load", "minilm"][..], &["unload", "minilm"], &["reload"]] {
        let e = assert_error(&as_nobody(args), "AccessDenied");
        assert!(e.contains("uid 65534"), "{e}");
    }
    assert_eq!(d.models()["minilm"]["state"], "ready");
    assert!(as_nobody(&["embed", "minilm", "hello"]).status.success());
    assert!(
        inferctl(&d.bus, &["reload"]).status.success(),
        "root may manage"
    );

    drop(d);
    let d = Daemon::start_with(&bus, &repo, "[dbus]\nadmin_uids = [65534]\n");
    let out = inferctl_as_nobody(&d.bus, &["unload", "minilm"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
