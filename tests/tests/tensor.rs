//! `Infer` on the all-dtypes test model, and its input checks.

use inferd_e2e::*;
use serde_json::json;

const OPS: &str = r#"
kind = "tensor"
file = "model.onnx"
[batching]
max_batch = 16
max_wait_ms = 5
"#;

fn daemon() -> (Bus, Repo, Daemon) {
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_test_model("ops", "ops", OPS);
    let d = Daemon::start(&bus, &repo);
    (bus, repo, d)
}

const ALL_INPUTS: [&str; 6] = [
    "a=float32:2x3:1,2,3,4,5,6.5",
    "b=float16:2x3:0.5,1,1.5,2,2.5,3",
    "c=int64:2:-5,9000000000",
    "d=int32:2x2:1,-2,3,-4",
    "e=uint8:2:255,7",
    "f=bool:2:true,false",
];

fn infer(d: &Daemon, inputs: &[&str]) -> std::process::Output {
    let mut args = vec!["--json", "infer", "ops"];
    for i in inputs {
        args.push("--input");
        args.push(i);
    }
    inferctl(&d.bus, &args)
}

#[test]
fn every_dtype_round_trips_through_the_model() {
    let (_bus, _repo, d) = daemon();
    let out = json(&infer(&d, &ALL_INPUTS));
    assert_eq!(
        out["a_out"],
        json!({"dtype": "float32", "shape": [2, 3], "data": [3.0, 5.0, 7.0, 9.0, 11.0, 14.0]})
    );
    assert_eq!(
        out["b_out"],
        json!({"dtype": "float16", "shape": [2, 3], "data": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    );
    assert_eq!(
        out["c_out"],
        json!({"dtype": "int64", "shape": [2], "data": [-4, 9000000001i64]})
    );
    assert_eq!(
        out["d_out"],
        json!({"dtype": "int32", "shape": [2, 2], "data": [3, -6, 9, -12]})
    );
    assert_eq!(
        out["e_out"],
        json!({"dtype": "uint8", "shape": [2], "data": [0, 8]})
    );
    assert_eq!(
        out["f_out"],
        json!({"dtype": "bool", "shape": [2], "data": [false, true]})
    );
}

#[test]
fn npy_files_are_accepted() {
    let (_bus, repo, d) = daemon();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    for v in [1.5f32, -1.0, 0.0] {
        npy.extend(v.to_le_bytes());
    }
    let path = repo.write("npy", "a.npy", npy.clone());
    let a = format!("a={}", path.display());
    let mut inputs = [
        a.as_str(),
        "b=float16:1x3:1,1,1",
        "c=int64:1:1",
        "d=int32:1x2:1,1",
        "e=uint8:1:1",
        "f=bool:1:0",
    ];
    let out = json(&infer(&d, &inputs));
    assert_eq!(out["a_out"]["data"], json!([4.0, -1.0, 1.0]));

    // `a=-`: the same .npy on stdin.
    inputs[0] = "a=-";
    let mut args = vec!["--json", "infer", "ops"];
    for i in &inputs {
        args.extend(["--input", i]);
    }
    let piped = inferctl_with_input(&d.bus, &args, "");
    assert!(
        stderr(&piped).contains("--input a: stdin: not a .npy file"),
        "{}",
        stderr(&piped)
    );
    assert_eq!(piped.status.code(), Some(4));
    let piped = inferctl_with_bytes(&d.bus, &args, &npy);
    assert_eq!(json(&piped), out);
}

#[test]
fn concurrent_requests_are_batched_without_mixing_rows() {
    let (_bus, _repo, d) = daemon();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let a = format!("a=float32:1x3:{i},{i},{i}");
            let c = format!("c=int64:1:{i}");
            let args = vec![
                "--json".to_owned(),
                "infer".into(),
                "ops".into(),
                "--input".into(),
                a,
                "--input".into(),
                "b=float16:1x3:1,1,1".into(),
                "--input".into(),
                c,
                "--input".into(),
                "d=int32:1x2:1,1".into(),
                "--input".into(),
                "e=uint8:1:1".into(),
                "--input".into(),
                "f=bool:1:0".into(),
            ];
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            inferctl_spawn(&d.bus, &refs)
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = json(&finish(c));
        let v = (2 * i + 1) as f64;
        assert_eq!(out["a_out"]["data"], json!([v, v, v]), "request {i}");
        assert_eq!(out["c_out"]["data"], json!([i + 1]), "request {i}");
    }
}

#[test]
fn bad_inputs_are_invalid_input_naming_the_input() {
    let (_bus, _repo, d) = daemon();
    let mut wrong_dtype = ALL_INPUTS;
    wrong_dtype[0] = "a=int32:2x3:1,2,3,4,5,6";
    let e = assert_error(&infer(&d, &wrong_dtype), "InvalidInput");
    assert!(
        e.contains("\"a\"") && e.contains("expected float32 [?, 3], got int32 [2, 3]"),
        "{e}"
    );

    let mut wrong_shape = ALL_INPUTS;
    wrong_shape[0] = "a=float32:3x2:1,2,3,4,5,6";
    let e = assert_error(&infer(&d, &wrong_shape), "InvalidInput");
    assert!(
        e.contains("expected float32 [?, 3], got float32 [3, 2]"),
        "{e}"
    );

    let mut wrong_rank = ALL_INPUTS;
    wrong_rank[2] = "c=int64:2x1:1,2";
    let e = assert_error(&infer(&d, &wrong_rank), "InvalidInput");
    assert!(e.contains("\"c\"") && e.contains("got int64 [2, 1]"), "{e}");

    let mut wrong_name = ALL_INPUTS;
    wrong_name[5] = "g=bool:2:true,false";
    let e = assert_error(&infer(&d, &wrong_name), "InvalidInput");
    assert!(
        e.contains("unknown input \"g\"") && e.contains("f (bool [?])"),
        "{e}"
    );

    let e = assert_error(&infer(&d, &ALL_INPUTS[..5]), "InvalidInput");
    assert!(e.contains("missing input \"f\""), "{e}");

    let e = assert_error(
        &inferctl(&d.bus, &["infer", "nosuch", "--input", "x=uint8:1:1"]),
        "ModelNotFound",
    );
    assert!(e.contains("nosuch"), "{e}");

    let e = assert_error(
        &inferctl(&d.bus, &["embed", "ops", "hello"]),
        "InvalidInput",
    );
    assert!(e.contains("use Infer"), "{e}");

    // The daemon is still serving after all of that.
    assert!(infer(&d, &ALL_INPUTS).status.success());
}
