//! systemd's side of `sd_notify`: a datagram socket passed to inferd as `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: TempDir,
    /// Every message received so far, with when it arrived.
    pub seen: Vec<(Instant, String)>,
}

impl Default for NotifySocket {
    fn default() -> Self {
        Self::new()
    }
}

impl NotifySocket {
    pub fn new() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        NotifySocket {
            sock,
            path,
            _dir: dir,
            seen: Vec::new(),
        }
    }

    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// One message, if any arrives within the socket's read timeout; it is kept in `seen`.
    fn recv(&mut self) -> Option<String> {
        let mut buf = vec![0u8; 8192];
        let n = self.sock.recv(&mut buf).ok()?;
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push((Instant::now(), msg.clone()));
        Some(msg)
    }

    /// Receives until a message satisfies `pred` and returns it; panics after `timeout` with
    /// everything seen.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(msg) = self.recv().filter(|m| pred(m)) {
                return msg;
            }
            assert!(
                Instant::now() < deadline,
                "no matching sd_notify message within {timeout:?}; seen: {:#?}",
                self.seen.iter().map(|(_, m)| m).collect::<Vec<_>>()
            );
        }
    }

    /// Receives everything that arrives within `d`.
    pub fn collect_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            self.recv();
        }
    }
}

/// The value of `KEY=` in a notify message.
pub fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}
