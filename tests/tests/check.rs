//! `inferd check` and start-up errors a person must be able to act on.

use std::process::Command;

use inferd_e2e::*;

fn check(models: &std::path::Path, config: Option<&str>, env_ort: bool) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("inferd"));
    if let Some(c) = config {
        let p = dir.path().join("inferd.toml");
        std::fs::write(&p, c).unwrap();
        cmd.arg("--config").arg(p);
    }
    if env_ort {
        cmd.env("ORT_DYLIB_PATH", ort_library());
    }
    cmd.arg("--models")
        .arg(models)
        .arg("check")
        .output()
        .unwrap()
}

#[test]
fn check_passes_on_a_good_repository() {
    let repo = Repo::new();
    repo.add_test_model("ops", "ops", "kind = \"tensor\"\n");
    let out = check(repo.path(), None, true);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let found = format!(
        "ok    ONNX Runtime 1.31.1 at {} (found by ORT_DYLIB_PATH)",
        ort_library().display()
    );
    assert!(text.contains(&found), "{text}");
    assert!(text.contains("CPUExecutionProvider"), "{text}");
    assert!(text.contains("ok    model ops (tensor"), "{text}");
}

#[test]
fn check_fails_on_a_bad_manifest_and_an_unknown_config_key() {
    let repo = Repo::new();
    repo.write(
        "bad",
        "model.toml",
        "kind = \"tensor\"\nfile = \"/etc/passwd\"\n",
    );
    let out = check(repo.path(), None, true);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("FAIL  model bad: file = \"/etc/passwd\" is not allowed"),
        "{}",
        stdout(&out)
    );

    let out = check(
        repo.path(),
        Some("[dbus]\nbus = \"session\"\nadmins = [1]\n"),
        true,
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("line 3") && e.contains("column 1") && e.contains("admins"),
        "{e}"
    );
}

#[test]
fn a_missing_runtime_lists_where_it_looked_and_how_to_get_one() {
    let repo = Repo::new();
    let out = check(
        repo.path(),
        Some("[runtime]\nlibrary = \"/nonexistent/libonnxruntime.so\"\n"),
        false,
    );
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("/nonexistent/libonnxruntime.so: runtime.library: not found"),
        "{text}"
    );
    assert!(text.contains("pip install onnxruntime"), "{text}");
}

#[test]
fn a_too_old_runtime_is_refused_with_its_version() {
    // A stand-in library that reports ONNX Runtime 1.10.0 through the real C entry point.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("old.c");
    std::fs::write(
        &src,
        "typedef struct { const void* (*GetApi)(unsigned); const char* (*GetVersionString)(void); } Base;\n\
         static const void* api(unsigned v) { (void)v; return 0; }\n\
         static const char* ver(void) { return \"1.10.0\"; }\n\
         static const Base base = { api, ver };\n\
         const Base* OrtGetApiBase(void) { return &base; }\n",
    )
    .unwrap();
    let lib = dir.path().join("libonnxruntime.so");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap();
    assert!(cc.success(), "cc failed");
    let repo = Repo::new();
    let out = check(
        repo.path(),
        Some(&format!("[runtime]\nlibrary = \"{}\"\n", lib.display())),
        false,
    );
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("version 1.10.0 is too old (need 1.17 or newer)"),
        "{text}"
    );
}
