//! Each architecture family the importer supports, end to end: a tiny random checkpoint folder
//! (`make test-models`: models/testdata/make_family_models.py) imported with `inferctl import`
//! (natively, no Python), served by inferd, and asked for a greedy continuation, which must be
//! the numpy reference's (models/importer/tests/reference.py, recomputing the whole sequence in
//! float64 at every step): Llama 3.1 rope scaling, Qwen2 biases, Qwen3 q/k norms, Mistral's
//! sliding window, Phi-4-mini's fused projections, partial rotary embedding and longrope, and
//! Gemma 2.

use inferd_e2e::*;

const FAMILIES: [&str; 6] = ["llama3", "qwen2", "qwen3", "mistral", "phi4-mini", "gemma2"];

#[test]
fn every_family_generates_the_reference_greedy_text() {
    let dir = test_models().join("families");
    let bus = Bus::start();
    let repo = Repo::new();
    for f in FAMILIES {
        import_model(&dir.join(f), f, repo.path(), &["--precision", "fp32"]);
    }
    let d = Daemon::start(&bus, &repo);
    for f in FAMILIES {
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{f}.json"))).unwrap())
                .unwrap();
        assert_eq!(d.models()[f]["state"], "ready", "{f}: {}", d.models()[f]);
        let n = reference["ids"].as_array().unwrap().len().to_string();
        let prompt = reference["prompt"].as_str().unwrap();
        let (text, info) = complete(
            &d,
            f,
            prompt,
            &["max_tokens", "u", &n, "temperature", "d", "0"],
        );
        assert_eq!(text, reference["text"].as_str().unwrap(), "{f}: {info}");
        assert_eq!(
            info_num(&info, "prompt_tokens") as usize,
            reference["prompt_ids"].as_array().unwrap().len(),
            "{f}"
        );
    }
}
