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
    /// With password authentication: the one user the test clients log in as.
    credentials: Option<(String, String)>,
    /// With TLS: the CA certificate that signed the broker's.
    pub ca_file: Option<PathBuf>,
}

/// A CA and a server certificate for 127.0.0.1 signed by it, readable by mosquitto's user.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("san.ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=inferd test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    use std::os::unix::fs::PermissionsExt;
    for f in ["ca.crt", "server.crt", "server.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
}

/// mosquitto's default log types, plus `subscribe`: a line `<client id> <qos> <filter>` once a
/// subscription is in place, which is how `subscribe_for` knows its subscriber is listening.
const LOG_TYPES: &str =
    "log_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\n";

/// A loopback port nothing listens on now (another process may take it before the caller).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_with(None, false, false)
    }

    /// A broker with `extra` lines in its config (`max_packet_size 131072`, say).
    pub fn with_options(extra: &str) -> Broker {
        let mut b = Broker::start_with(None, false, false);
        b.kill();
        let conf = b.dir.path().join("mosquitto.conf");
        let mut text = std::fs::read_to_string(&conf).expect("config");
        text.push_str(extra);
        std::fs::write(&conf, text).expect("config");
        b.respawn();
        b
    }

    /// A broker that writes its database after every change, so a SIGKILL loses nothing it
    /// acknowledged: the faults it suffers are crashes of the process, not of its storage.
    pub fn durable() -> Broker {
        Broker::start_with(None, false, true)
    }

    /// A broker that only lets `user` in with `password` (mosquitto_passwd), no anonymous.
    pub fn with_password(user: &str, password: &str) -> Broker {
        Broker::start_with(Some((user.to_owned(), password.to_owned())), false, false)
    }

    /// TLS only (a CA and a certificate for 127.0.0.1 made here with openssl), and a password.
    pub fn with_tls(user: &str, password: &str) -> Broker {
        Broker::start_with(Some((user.to_owned(), password.to_owned())), true, false)
    }

    fn start_with(credentials: Option<(String, String)>, tls: bool, durable: bool) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\nset_tcp_nodelay true\npersistence true\npersistence_location {}/\nmax_queued_messages 10000\n{LOG_TYPES}",
            dir.path().display()
        );
        if durable {
            conf.push_str("autosave_on_changes true\nautosave_interval 1\n");
        }
        match &credentials {
            None => conf.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let file = dir.path().join("passwords");
                let ok = Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, password])
                    .status()
                    .expect("mosquitto_passwd")
                    .success();
                assert!(ok, "mosquitto_passwd failed");
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
        }
        let ca_file = tls.then(|| {
            let d = dir.path();
            make_certificates(d);
            conf.push_str(&format!(
                "cafile {0}/ca.crt\ncertfile {0}/server.crt\nkeyfile {0}/server.key\n",
                d.display()
            ));
            d.join("ca.crt")
        });
        std::fs::write(dir.path().join("mosquitto.conf"), conf).expect("config");
        // Started as root, mosquitto drops to its own user, which must still write its database.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let mut b = Broker {
            child: None,
            dir,
            port,
            credentials,
            ca_file,
        };
        b.spawn();
        b
    }

    /// Starts a new broker's mosquitto; another free port is tried when another test took this
    /// one between `free_port` and mosquitto's bind.
    fn spawn(&mut self) {
        for _ in 0..5 {
            if self.try_spawn() {
                return;
            }
            let conf = self.dir.path().join("mosquitto.conf");
            let text = std::fs::read_to_string(&conf).expect("config");
            let port = free_port();
            let text = text.replacen(
                &format!("listener {} ", self.port),
                &format!("listener {port} "),
                1,
            );
            std::fs::write(&conf, text).expect("config");
            self.port = port;
        }
        panic!("mosquitto did not start: {}", self.log());
    }

    /// Starts mosquitto; false when it exited instead of listening (its port was taken).
    fn try_spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.log_path()).expect("log");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (apt install mosquitto)");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Listening, and still ours: a port another test's broker holds answers too, while
        // this mosquitto exits with "Address already in use".
        let up = loop {
            if child.try_wait().expect("wait").is_some() {
                break false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
                break child.try_wait().expect("wait").is_none();
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = up.then_some(child);
        up
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the broker with SIGTERM (it saves its sessions and queued messages, as a broker
    /// restarted by systemd would) and starts it again on the same port.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            use nix::sys::signal::{kill, Signal};
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            // A paused broker acts on the signal once it runs again.
            let _ = kill(pid, Signal::SIGCONT);
            let _ = c.wait();
        }
        self.respawn();
    }

    /// Stops the broker (SIGSTOP) without closing a connection: a broker that hangs. Its
    /// clients' messages go unacknowledged until `resume` or `restart`.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, s: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            nix::sys::signal::kill(pid, s).expect("signal mosquitto");
        }
    }

    /// Kills the broker with SIGKILL (a crash) and starts it again on the same port.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.respawn();
    }

    /// Starts mosquitto again on the same port, where its clients reconnect.
    fn respawn(&mut self) {
        assert!(
            self.try_spawn(),
            "mosquitto did not restart: {}",
            self.log()
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca_file.is_some() {
            "mqtts"
        } else {
            "mqtt"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The `[mqtt]` config section for a daemon on this broker.
    pub fn config(&self, node: &str) -> String {
        format!("[mqtt]\nurl = \"{}\"\nnode = \"{node}\"\n", self.url())
    }

    /// Waits until `node`'s retained status says online (it has subscribed by then); returns it.
    pub fn wait_online(&self, node: &str) -> serde_json::Value {
        self.wait_status(node, "online")
    }

    pub fn wait_status(&self, node: &str, state: &str) -> serde_json::Value {
        for _ in 0..100 {
            let s = self
                .subscribe_for(&format!("inferd/{node}/status"), 1, 2)
                .collect();
            if s.first().is_some_and(|s| s["state"] == state) {
                return s[0].clone();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{node} never reported {state}");
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// `-p PORT` and, with authentication, `-u USER -P PASSWORD` for mosquitto's clients.
    fn client_args(&self) -> Vec<String> {
        let mut a = vec![
            "-h".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        if let Some((u, p)) = &self.credentials {
            a.extend(["-u".to_owned(), u.clone(), "-P".to_owned(), p.clone()]);
        }
        if let Some(ca) = &self.ca_file {
            a.extend(["--cafile".to_owned(), ca.display().to_string()]);
        }
        a
    }

    /// The messages on `filter` (retained ones first) within `secs` or until `count` came, as
    /// (topic, payload) pairs: `mosquitto_sub -v`. Empty retained messages are deletions and
    /// never arrive.
    pub fn messages(&self, filter: &str, count: usize, secs: u32) -> Vec<(String, String)> {
        let out = Command::new("mosquitto_sub")
            .args(self.client_args())
            .args(["-v", "-q", "1", "-t", filter])
            .args(["-C", &count.to_string(), "-W", &secs.to_string()])
            .output()
            .expect("mosquitto_sub");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let (t, p) = l.split_once(' ').unwrap_or((l, ""));
                (t.to_owned(), p.to_owned())
            })
            .collect()
    }

    /// `mosquitto_pub` as it is (MQTT 3.1.1), QoS 1, the payload on its stdin.
    pub fn publish(&self, topic: &str, payload: &str) {
        self.publish_bytes(topic, payload.as_bytes());
    }

    /// Each line a message, QoS 1, from one `mosquitto_pub`, which returns once the broker
    /// acknowledged them all: a client that has nothing left in flight. With `reply`, on
    /// MQTT 5 with that Response Topic and Correlation Data `r`.
    pub fn publish_lines(
        &self,
        topic: &str,
        reply: Option<&str>,
        lines: impl IntoIterator<Item = String>,
    ) {
        let text: String = lines.into_iter().map(|l| l + "\n").collect();
        let mut args = vec!["-q", "1", "-t", topic, "-l"];
        if let Some(reply) = reply {
            args.extend(["-V", "mqttv5", "-D", "publish", "response-topic", reply]);
            args.extend(["-D", "publish", "correlation-data", "r"]);
        }
        self.publish_with(&args, text.as_bytes());
    }

    pub fn publish_bytes(&self, topic: &str, payload: &[u8]) {
        self.publish_with(&["-q", "1", "-t", topic, "-s"], payload);
    }

    fn publish_with(&self, args: &[&str], stdin: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("mosquitto_pub")
            .args(self.client_args())
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub (apt install mosquitto-clients)");
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(stdin).expect("payload");
        drop(pipe);
        assert!(
            child.wait().expect("mosquitto_pub").success(),
            "mosquitto_pub failed"
        );
    }

    /// `mosquitto_sub` on `topic` until `count` messages arrived (or 20 s passed); start it,
    /// publish, then `collect` it.
    pub fn subscribe(&self, topic: &str, count: usize) -> Subscriber {
        self.subscribe_for(topic, count, 20)
    }

    pub fn subscribe_for(&self, topic: &str, count: usize, secs: u32) -> Subscriber {
        static SUBSCRIBERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SUBSCRIBERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("test-sub-{}-{n}", std::process::id());
        let child = Command::new("mosquitto_sub")
            .args(self.client_args())
            .args(["-i", &id, "-q", "1", "-t", topic])
            .args(["-C", &count.to_string(), "-W", &secs.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub");
        let subscribed = format!("{id} 1 {topic}\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(&subscribed) {
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub never subscribed to {topic}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

pub type Publish5 = rumqttc::v5::mqttbytes::v5::Publish;

/// An MQTT 5 client (rumqttc) subscribed to `reply`, its event loop polled on a task that
/// keeps reconnecting. `persistent`: a session the broker keeps across disconnections (and
/// restarts, with persistence on), as a client that must not lose answers would use.
pub async fn v5_client(
    broker: &Broker,
    id: &str,
    reply: &str,
    persistent: bool,
) -> (
    rumqttc::v5::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<Publish5>,
) {
    v5_client_at(broker.port, id, reply, persistent).await
}

/// [`v5_client`] for the broker on `port` (for a task that cannot borrow the `Broker`).
pub async fn v5_client_at(
    port: u16,
    id: &str,
    reply: &str,
    persistent: bool,
) -> (
    rumqttc::v5::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<Publish5>,
) {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(Some(4 << 20));
    if persistent {
        o.set_clean_start(false)
            .set_session_expiry_interval(Some(3600));
    }
    let (client, mut lp) = AsyncClient::new(o, 1000);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed, suback) = tokio::sync::oneshot::channel();
    let mut subscribed = Some(subscribed);
    tokio::spawn(async move {
        loop {
            match lp.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed.take() {
                        let _ = s.send(());
                    }
                }
                Ok(_) => {}
                Err(_) if tx.is_closed() => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client
        .subscribe(reply, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::time::timeout(Duration::from_secs(10), suback)
        .await
        .expect("no SUBACK within 10 s")
        .expect("the event loop ended");
    (client, rx)
}

/// MQTT 5 request properties: Response Topic, Correlation Data, optional Message Expiry.
pub fn props(
    reply: &str,
    correlation: &str,
    expiry: Option<u32>,
) -> rumqttc::v5::mqttbytes::v5::PublishProperties {
    rumqttc::v5::mqttbytes::v5::PublishProperties {
        response_topic: Some(reply.into()),
        correlation_data: Some(bytes::Bytes::from(correlation.to_owned())),
        message_expiry_interval: expiry,
        ..Default::default()
    }
}

pub fn json_of(p: &Publish5) -> serde_json::Value {
    serde_json::from_slice(&p.payload).expect("a JSON reply")
}
