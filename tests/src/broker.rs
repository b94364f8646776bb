//! A private `mosquitto` for each test that needs one, on a free port, from a config written
//! here; stopped when dropped. Plus the MQTT clients the tests use: `mosquitto_pub`/`_sub` as
//! they are, and rumqttc for MQTT 5 properties.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct Broker {
    child: Option<Child>,
    dir: TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 10000\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).expect("config");
        let mut b = Broker {
            child: None,
            dir,
            port,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).expect("log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (apt install mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker (SIGKILL, no goodbye) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The `[mqtt]` config section for a daemon on this broker.
    pub fn config(&self, node: &str) -> String {
        format!("[mqtt]\nurl = \"{}\"\nnode = \"{node}\"\n", self.url())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// `mosquitto_pub` as it is (MQTT 3.1.1), QoS 1, the payload on its stdin.
    pub fn publish(&self, topic: &str, payload: &str) {
        use std::io::Write;
        let port = self.port.to_string();
        let mut child = Command::new("mosquitto_pub")
            .args(["-p", &port, "-q", "1", "-t", topic, "-s"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub (apt install mosquitto-clients)");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(payload.as_bytes()).expect("payload");
        drop(stdin);
        assert!(
            child.wait().expect("mosquitto_pub").success(),
            "mosquitto_pub failed"
        );
    }

    /// `mosquitto_sub` on `topic` until `count` messages arrived (or 20 s passed); start it,
    /// publish, then `collect` it.
    pub fn subscribe(&self, topic: &str, count: usize) -> Subscriber {
        let child = Command::new("mosquitto_sub")
            .args(["-p", &self.port.to_string(), "-q", "1", "-t", topic])
            .args(["-C", &count.to_string(), "-W", "20"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub");
        // mosquitto_sub has subscribed once it is connected; give it that moment.
        std::thread::sleep(Duration::from_millis(300));
        Subscriber { child }
    }
}

pub struct Subscriber {
    child: Child,
}

impl Subscriber {
    /// The payloads received, parsed as JSON.
    pub fn collect(self) -> Vec<serde_json::Value> {
        let out = self.child.wait_with_output().expect("mosquitto_sub");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
