//! The Python client package (client/python, `inferd_client`), end to end: its pytest suite
//! drives a real inferd over D-Bus (jeepney) and MQTT (paho-mqtt), sync and asyncio, and
//! checks the answers against independent references (Python onnxruntime's MiniLM embeddings,
//! transformers' greedy SmolLM2 text, the `ops` model's arithmetic).

use std::process::Command;

use inferd_e2e::*;

#[test]
fn the_python_client_works_over_dbus_and_mqtt() {
    let broker = Broker::start();
    let bus = Bus::start();
    let repo = Repo::new();
    repo.add_minilm("minilm");
    repo.add_llm("smollm2-fp32", "smollm2-fp32", "");
    // One sequence at a time and a queue of one: a second stream waits (and times out), a
    // third is Overloaded; a long generation stays running until it is cancelled.
    repo.add_endless_llm("tiny", "max_sequences = 1\n[batching]\nqueue = 1\n");
    repo.add_llm("intent", "intent", "");
    repo.add_test_model("ops", "ops", "kind = \"tensor\"\n");
    let d = Daemon::start_with(&bus, &repo, &broker.config("n1"));
    broker.wait_online("n1");
    let package = tests_dir()
        .parent()
        .expect("the workspace")
        .join("client/python");
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(package.join("tests"))
        // Imported from the checkout, not installed.
        .env("PYTHONPATH", &package)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("INFERD_DBUS_ADDRESS", &d.bus)
        .env("INFERD_MQTT_URL", broker.url())
        .env("INFERD_MQTT_NODE", "n1")
        .output()
        .expect("pytest");
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "{report}{}\ndaemon log:\n{}",
        stderr(&out),
        d.log()
    );
    // Every live test ran: none skipped for want of the environment.
    assert!(
        report.contains(" passed") && !report.contains("skipped"),
        "{report}"
    );
}
