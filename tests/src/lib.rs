//! Harness for end-to-end tests: a private `dbus-daemon`, a temporary model repository, and the
//! real `inferd` and `inferctl` binaries, all torn down when dropped.
//!
//! Tests need ONNX Runtime and the default models prepared by `make` (`models/fetch.py`); their
//! paths come from `ORT_DYLIB_PATH` and `INFERD_MODELS`, or the default cache.

pub mod broker;
mod client;
mod measure;
mod metrics;
pub mod notify;
pub mod polkit;
mod repo;
pub use broker::{free_port, Broker};
pub use client::*;
pub use measure::{full_scale, percentile, record, rss_of};
pub use metrics::{sample, scrape};
pub use notify::NotifySocket;
pub use repo::Repo;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Directory holding the workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (make test does)",
        p.display()
    );
    p
}

fn cache() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::env::var_os("INFERD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache/inferd"))
}

/// The ONNX Runtime library prepared by `make`.
pub fn ort_library() -> PathBuf {
    let p = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("onnxruntime/1.31.1/libonnxruntime.so.1.31.1"));
    assert!(
        p.exists(),
        "ONNX Runtime not found at {}: run `make fetch`",
        p.display()
    );
    p
}

/// transformers' greedy SmolLM2 cases (tests/fixtures/smollm2_fp32_greedy.json), each with its
/// prompt written in the fixture's chat format.
pub fn smollm2_greedy_cases() -> Vec<(String, Value)> {
    let path = tests_dir().join("fixtures/smollm2_fp32_greedy.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let format = fx["chat_format"].as_str().unwrap();
    fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                format.replace("{prompt}", c["prompt"].as_str().unwrap()),
                c.clone(),
            )
        })
        .collect()
}

/// SmolLM2's GGUF, fetched by `make fetch` (the source of the default `smollm2`).
pub fn smollm2_gguf() -> PathBuf {
    let p = cache().join("gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `make fetch`", p.display());
    p
}

/// The prepared default models (`minilm`, ...).
pub fn models_cache() -> PathBuf {
    let p = std::env::var_os("INFERD_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("models"));
    assert!(
        p.join("minilm/model.onnx").exists(),
        "default models not found in {}: run `make fetch`",
        p.display()
    );
    p
}

/// LLM imports made by `make test-models` (smollm2-fp32, tiny-qwen2).
pub fn test_models() -> PathBuf {
    let p = std::env::var_os("INFERD_TEST_MODELS")
        .map(PathBuf::from)
        .expect("INFERD_TEST_MODELS is not set: run the tests through `make test`");
    assert!(
        p.join("smollm2-fp32/model.onnx").exists(),
        "{} lacks the test imports: run `make test-models`",
        p.display()
    );
    p
}

/// The Python of the venv `make` prepares (the importer, pytest, the `openai` client).
pub fn python() -> PathBuf {
    let p = cache().join("venv/bin/python");
    assert!(p.exists(), "{} is missing: run `make test`", p.display());
    p
}

/// The workspace's `tests/` folder.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory other uids can read, for tests that call as another user.
pub fn shared_tempdir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(dir.path(), mode).expect("chmod tempdir");
    dir
}

/// A call may wait for a generation behind many others on a loaded machine: longer than
/// busctl's default 25 s, which the tests do not measure.
fn busctl(bus: &str, flags: &[&str], method: &str, signature: &str, args: &[&str]) -> Output {
    Command::new("busctl")
        .args(["--address", bus, "--timeout=300"])
        .args(flags)
        .args([
            "call",
            "org.inferd.Inferd1",
            "/org/inferd/Inferd1",
            "org.inferd.Inferd1",
            method,
            signature,
        ])
        .args(args)
        .output()
        .expect("run busctl")
}

/// `busctl call` of a method of inferd's object, as a shell user would type it.
pub fn busctl_call(bus: &str, method: &str, signature: &str, args: &[&str]) -> Output {
    busctl(bus, &[], method, signature, args)
}

/// `gdbus call` of a method of inferd's object; arguments in GVariant text form.
pub fn gdbus_call(bus: &str, method: &str, args: &[&str]) -> Output {
    Command::new("gdbus")
        .args(["call", "--address", bus, "--dest", "org.inferd.Inferd1"])
        .args(["--object-path", "/org/inferd/Inferd1", "--method"])
        .arg(format!("org.inferd.Inferd1.{method}"))
        .args(args)
        .output()
        .expect("run gdbus")
}

/// A property of inferd's object, as `busctl get-property` prints it (`s "1.31.1"`).
pub fn property(bus: &str, name: &str) -> String {
    let o = Command::new("busctl")
        .args(["--address", bus, "get-property", "org.inferd.Inferd1"])
        .args(["/org/inferd/Inferd1", "org.inferd.Inferd1", name])
        .output()
        .expect("run busctl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Like [`busctl_call`] with `--json=short`: the reply's JSON (`{"type": ..., "data": [...]}`).
pub fn busctl_json(bus: &str, method: &str, signature: &str, args: &[&str]) -> Value {
    json(&busctl(bus, &["--json=short"], method, signature, args))
}

/// Every object path under inferd's name (`busctl tree --list`).
///
/// `busctl tree` lists, then introspects each child; a request object that goes
/// between the two (its caller left) fails the walk, so a failed walk is retried.
pub fn object_paths(bus: &str) -> Vec<String> {
    let mut tries = 0;
    loop {
        let out = Command::new("busctl")
            .args(["--address", bus, "tree", "--list", "org.inferd.Inferd1"])
            .output()
            .expect("run busctl");
        if out.status.success() {
            return stdout(&out).lines().map(str::to_owned).collect();
        }
        tries += 1;
        assert!(tries < 10, "busctl tree: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The path of a request object (a running generation, say), once one exists (60 s at most).
pub fn wait_request_object(bus: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let paths = object_paths(bus);
        if let Some(p) = paths
            .into_iter()
            .find(|p| p.starts_with("/org/inferd/Inferd1/request/"))
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no request object appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private bus that any uid may connect to, so tests can call as another user.
pub struct Bus {
    child: Child,
    _dir: TempDir,
    pub address: String,
}

impl Bus {
    /// A session-type bus where everyone may own, call and eavesdrop.
    pub fn start() -> Bus {
        Bus::with_policy(
            "session",
            r#"<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>"#,
        )
    }

    /// A bus of `kind` (`session`, `system`) whose `<busconfig>` holds `policy` (policies and
    /// includes), listening on a socket every uid can reach.
    pub fn with_policy(kind: &str, policy: &str) -> Bus {
        let dir = shared_tempdir("inferd-bus");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{kind}</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"#,
                dir.path().display()
            ),
        )
        .expect("write bus config");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read bus address");
        assert!(
            !line.trim().is_empty(),
            "dbus-daemon did not start with {}",
            conf.display()
        );
        Bus {
            child,
            _dir: dir,
            address: line.trim().to_owned(),
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `inferd` binary, stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    /// Holds the config file, the log and (by default) the state directory.
    dir: TempDir,
    pub bus: String,
}

impl Daemon {
    pub fn start(bus: &Bus, repo: &Repo) -> Daemon {
        Daemon::start_with(bus, repo, "")
    }

    /// Starts with extra config file contents and waits until no model is loading.
    pub fn start_with(bus: &Bus, repo: &Repo, config: &str) -> Daemon {
        let d = Daemon::launch(
            bus,
            repo,
            Launch {
                config,
                ..Default::default()
            },
        );
        d.wait_settled();
        d
    }

    /// Starts without waiting for anything. The config file is `config_path()`.
    pub fn launch(bus: &Bus, repo: &Repo, how: Launch) -> Daemon {
        // Readable by other uids: a wrapper may run inferd as one.
        let dir = shared_tempdir("inferd-daemon");
        let conf = dir.path().join("inferd.toml");
        std::fs::write(&conf, how.config).expect("config");
        let log = dir.path().join("inferd.log");
        let mut cmd = match how.wrapper {
            [] => Command::new(bin("inferd")),
            [program, args @ ..] => {
                let mut c = Command::new(program);
                c.args(args).arg(bin("inferd"));
                c
            }
        };
        cmd.arg("--config")
            .arg(&conf)
            .arg("--models")
            .arg(repo.path())
            .arg("--bus")
            .arg(&bus.address)
            .args(["--log-level", "debug"])
            .env("ORT_DYLIB_PATH", ort_library())
            .env("STATE_DIRECTORY", how.state_dir.unwrap_or(dir.path()))
            .envs(how.env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = cmd.spawn().expect("start inferd");
        Daemon {
            child: Some(child),
            log,
            dir,
            bus: bus.address.clone(),
        }
    }

    /// The config file, for tests that rewrite it and reload.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("inferd.toml")
    }

    /// The log file inferd's stderr goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        nix::sys::signal::kill(pid, sig).expect("signal inferd");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains `needle` (polled; fails after 10 s).
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the log never said {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Waits until the daemon answers and no model is loading.
    pub fn wait_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = inferctl(&self.bus, &["--json", "models"]);
            if out.status.success() {
                let models: Value = serde_json::from_slice(&out.stdout).expect("models json");
                if models
                    .as_array()
                    .is_some_and(|a| a.iter().all(|m| m["state"] != "loading"))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "inferd did not settle; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ListModels` as JSON objects keyed by name.
    pub fn models(&self) -> Value {
        let out = inferctl(&self.bus, &["--json", "models"]);
        assert!(out.status.success(), "models failed: {}", stderr(&out));
        let list: Value = serde_json::from_slice(&out.stdout).expect("json");
        let mut map = serde_json::Map::new();
        for m in list.as_array().expect("array") {
            map.insert(m["name"].as_str().expect("name").to_owned(), m.clone());
        }
        Value::Object(map)
    }

    /// Waits for inferd to exit on its own (a start that must fail).
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "inferd still runs after {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "inferd did not stop within 20 s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            if std::thread::panicking() {
                eprintln!("---- inferd log ----\n{}", self.log());
            }
            let mut child = self.child.take().expect("child");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How [`Daemon::launch`] starts inferd, beyond the bus and the repository.
#[derive(Default)]
pub struct Launch<'a> {
    /// Contents of the config file.
    pub config: &'a str,
    pub env: &'a [(&'a str, &'a str)],
    /// A program (and its arguments) that execs inferd with the rest of the command line,
    /// such as `sh -c '... exec "$0" "$@"'`.
    pub wrapper: &'a [&'a str],
    /// `STATE_DIRECTORY`; a fresh temporary one when absent.
    pub state_dir: Option<&'a Path>,
}

/// `gdbus monitor` of every signal from inferd that an ordinary (non-eavesdropping) client
/// would receive; its lines arrive on a channel, so waiting for one has a deadline.
pub struct Monitor {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl Monitor {
    /// Starts it and returns once its match rule is in place: gdbus adds the rule before it
    /// asks who owns the name, and the bus answers in order, so the owner line comes after.
    pub fn start(bus: &str) -> Monitor {
        let mut child = Command::new("gdbus")
            .args(["monitor", "--address", bus, "--dest", "org.inferd.Inferd1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start gdbus monitor");
        let out = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut m = Monitor {
            child,
            lines,
            seen: String::new(),
        };
        m.wait_for("is owned by");
        m
    }

    /// Waits (up to 10 s) until a line contains `needle`; everything seen so far.
    fn wait_for(&mut self, needle: &str) -> &str {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(_) => panic!("gdbus monitor never printed {needle:?}:\n{}", self.seen),
            }
        }
        &self.seen
    }

    /// Stops it once it has printed `last` (a signal sent after the ones the test is about: the
    /// bus delivers in order), and returns what it printed.
    pub fn stop_after(mut self, last: &str) -> String {
        self.wait_for(last);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen
    }
}
