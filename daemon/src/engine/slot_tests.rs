//! The lifecycle's transitions, each from every state it can start from, and the refused ones.

use std::path::PathBuf;

use super::*;
use crate::engine::providers::Placement;
use crate::kinds::Prepare;
use crate::manifest::{Manifest, Provider};

fn spec(keep_alive: Option<u64>) -> ModelSpec {
    let keep = keep_alive.map_or(String::new(), |k| format!("keep_alive_s = {k}\n"));
    let text = format!("kind = \"tensor\"\nfile = \"m.onnx\"\n{keep}");
    ModelSpec {
        name: "m".into(),
        dir: PathBuf::from("/m"),
        manifest: Manifest::parse(&text, std::path::Path::new("model.toml")).unwrap(),
        model_path: PathBuf::from("/m/m.onnx"),
        tokenizer_path: None,
    }
}

/// A loaded version whose load measured `bytes`.
fn version(bytes: u64) -> Serving {
    Serving {
        queue: Arc::new(Queue::new("m", 4, 0.1, Arc::default())),
        spec: spec(Some(60)),
        info: Loaded {
            placement: Placement {
                provider: Provider::Cpu,
                skipped: Vec::new(),
                build_pending: false,
            },
            inputs: Vec::new(),
            pool: Pool::Host,
            memory_bytes: Some(bytes),
            estimate_bytes: 1,
            kv: None,
            prepare: Prepare::Nothing,
        },
    }
}

fn failure(why: &str) -> LoadError {
    LoadError::Graph(why.into())
}

fn ready(fp: &str) -> Slot {
    let mut s = Slot::default();
    let g = s.begin_load(Kind::Tensor, fp.into());
    assert!(s.finish_load(g, Ok(version(100))));
    s
}

fn queue_of(s: &Slot) -> Arc<Queue<Job>> {
    s.serving("m").unwrap().queue.clone()
}

#[test]
fn a_first_load_goes_from_loading_to_ready() {
    let mut s = Slot::default();
    assert_eq!(s.state(), ModelState::Unloaded);
    assert!(!s.is_current("a"));
    let g = s.begin_load(Kind::Tensor, "a".into());
    assert_eq!(s.state(), ModelState::Loading);
    assert!(s.is_current("a") && !s.is_current("b"));
    assert_eq!(s.loading_reserve(), 0, "nothing measured yet");
    assert!(s.finish_load(g, Ok(version(100))));
    assert_eq!(s.state(), ModelState::Ready);
    assert!(s.is_current("a"));
    assert_eq!((s.memory(), s.keep_alive()), (100, Some(60)));
    assert!(s.idle());
}

#[test]
fn a_failed_first_load_says_why_and_a_rescan_retries() {
    let mut s = Slot::default();
    let g = s.begin_load(Kind::Tensor, "a".into());
    assert!(!s.finish_load(g, Err(failure("bad graph"))));
    assert_eq!(s.state(), ModelState::Failed);
    assert!(!s.is_current("a"));
    let Err(Error::ModelNotReady { reason, .. }) = s.serving("m") else {
        panic!("a failed model serves nothing")
    };
    assert!(reason.unwrap().contains("bad graph"));
    assert_eq!(s.status("m").error.as_deref(), Some("bad graph"));
}

#[test]
fn load_over_load_keeps_only_the_newest() {
    let mut s = Slot::default();
    let first = s.begin_load(Kind::Tensor, "a".into());
    let second = s.begin_load(Kind::Tensor, "b".into());
    assert!(
        !s.finish_load(first, Ok(version(1))),
        "a superseded load is discarded"
    );
    assert_eq!(s.state(), ModelState::Loading);
    assert!(s.is_current("b") && !s.is_current("a"));
    assert!(s.finish_load(second, Ok(version(2))));
    assert_eq!(s.memory(), 2);
}

#[test]
fn unload_during_a_load_discards_it() {
    let mut s = Slot::default();
    let g = s.begin_load(Kind::Tensor, "a".into());
    s.unload();
    assert_eq!(s.state(), ModelState::Unloaded);
    assert!(!s.finish_load(g, Ok(version(1))));
    assert_eq!(s.state(), ModelState::Unloaded);
}

#[test]
fn unload_on_request_closes_and_a_rescan_leaves_it_until_files_change() {
    let mut s = ready("a");
    let q = queue_of(&s);
    s.unload();
    assert!(q.is_closed());
    assert_eq!(s.state(), ModelState::Unloaded);
    assert!(s.is_current("a") && !s.is_current("b"));
    assert!(s.serving("m").is_err() && s.memory() == 0);
}

#[test]
fn a_reload_that_fails_while_serving_keeps_the_old_version() {
    let mut s = ready("a");
    let old = queue_of(&s);
    let g = s.begin_load(Kind::Tensor, "b".into());
    assert_eq!(
        s.state(),
        ModelState::Ready,
        "the old version serves during the reload"
    );
    assert!(s.is_current("b"));
    assert_eq!(
        s.loading_reserve(),
        100,
        "the reload reserves what the last load took"
    );
    assert!(!s.idle(), "a reload in flight is not idle");
    assert!(!s.finish_load(g, Err(failure("broken"))));
    assert_eq!(s.state(), ModelState::Ready);
    assert!(!old.is_closed() && Arc::ptr_eq(&queue_of(&s), &old));
    let error = s.status("m").error.unwrap();
    assert!(
        error.starts_with("reload failed, the previous version keeps serving"),
        "{error}"
    );
    assert!(!s.is_current("b"), "a rescan tries the failed files again");
    // A reload that works replaces the version and clears the error.
    let g = s.begin_load(Kind::Tensor, "c".into());
    assert!(s.finish_load(g, Ok(version(300))));
    assert!(old.is_closed() && s.status("m").error.is_none());
    assert_eq!(s.memory(), 300);
}

#[test]
fn a_manifest_error_while_serving_is_reported_beside_it() {
    let mut s = ready("a");
    s.manifest_failed("bad model.toml".into());
    assert_eq!(s.state(), ModelState::Ready);
    assert!(s.status("m").error.unwrap().contains("bad model.toml"));
    assert!(!s.is_current("a"));
}

#[test]
fn budget_parking_and_a_wake() {
    let mut s = ready("a");
    let q = queue_of(&s);
    s.park("for the memory budget");
    assert!(q.is_closed());
    assert_eq!(s.state(), ModelState::Unloaded);
    assert!(s.parked() && s.is_current("a"));
    let (spec, fp) = s.parked_version().unwrap();
    assert_eq!((spec.name.as_str(), fp), ("m", Some("a")));
    assert!(s
        .status("m")
        .note
        .unwrap()
        .contains("unloaded for the memory budget"));
    assert_eq!(
        (s.pool(), s.measured()),
        (Some(Pool::Host), 100),
        "kept while parked"
    );
    // A wake is a load; the model stays parked until it is done.
    let g = s.begin_load(Kind::Tensor, "a".into());
    assert!(s.parked() && s.state() == ModelState::Loading);
    assert!(s.finish_load(g, Ok(version(120))));
    assert!(!s.parked() && s.state() == ModelState::Ready);
}

#[test]
fn a_wake_refused_for_room_keeps_the_parked_version() {
    let mut s = ready("a");
    s.park("after its keep_alive");
    s.manifest_failed("no room in the memory budget".into());
    assert_eq!(s.state(), ModelState::Failed);
    assert!(
        s.parked_version().is_some(),
        "the next request may try again"
    );
    // A wake whose load fails loses it: the failure is the model's state now.
    let g = s.begin_load(Kind::Tensor, "a".into());
    assert!(!s.finish_load(g, Err(failure("gone"))));
    assert!(!s.parked() && s.state() == ModelState::Failed);
}

#[test]
fn only_a_ready_model_parks_or_builds() {
    let mut s = Slot::default();
    s.park("for the memory budget");
    assert!(!s.parked() && s.state() == ModelState::Unloaded);
    assert_eq!(s.begin_build(), None);
    let g = s.begin_load(Kind::Tensor, "a".into());
    assert_eq!(s.begin_build(), None, "nothing serves yet");
    s.park("for the memory budget");
    assert_eq!(
        s.state(),
        ModelState::Loading,
        "a load in flight is not parked"
    );
    assert!(s.finish_load(g, Ok(version(1))));
    assert!(s.begin_build().is_some());
}

#[test]
fn an_engine_build_replaces_the_version_or_fails_beside_it() {
    let mut s = ready("a");
    let old = queue_of(&s);
    let g = s.begin_build().unwrap();
    assert!(s.status("m").engine_build_s.is_some() && !s.idle());
    assert!(s.finish_load(g, Ok(version(500))));
    assert!(old.is_closed() && s.memory() == 500);
    assert!(s.status("m").engine_build_s.is_none());
    let g = s.begin_build().unwrap();
    assert!(!s.finish_load(g, Err(failure("out of workspace"))));
    assert_eq!(s.state(), ModelState::Ready);
    assert!(s.build_failed().unwrap().contains("out of workspace"));
    assert!(s.status("m").note.unwrap().contains("out of workspace"));
}

#[test]
fn shutdown_during_a_build_leaves_the_serving_version() {
    let mut s = ready("a");
    let g = s.begin_build().unwrap();
    // The engine turns a build finishing after shutdown began into this error.
    assert!(!s.finish_load(g, Err(failure("inferd is shutting down"))));
    assert_eq!(s.state(), ModelState::Ready);
    assert!(s.build_failed().unwrap().contains("shutting down"));
}

#[test]
fn a_reload_discards_a_build_in_flight() {
    let mut s = ready("a");
    let build = s.begin_build().unwrap();
    let reload = s.begin_load(Kind::Tensor, "b".into());
    assert!(
        !s.finish_load(build, Ok(version(9))),
        "the build was of the old files"
    );
    assert!(s.finish_load(reload, Ok(version(2))));
    assert_eq!(s.memory(), 2);
}
