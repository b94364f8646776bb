//! A stand-in polkit authority: `org.freedesktop.PolicyKit1` on a private bus, answering
//! `CheckAuthorization` from a table and recording every question. A real polkitd needs the
//! system's own bus, logind sessions and its actions installed under /usr/share, none of which
//! a test run may change; the daemon's side of the protocol is the same either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::zvariant::OwnedValue;

/// One `CheckAuthorization` call as polkit received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub subject_kind: String,
    /// The subject's `name` detail: the caller's unique bus name.
    pub subject_name: String,
    pub action: String,
    pub flags: u32,
}

struct Authority {
    /// action id → (is_authorized, is_challenge); unknown actions are refused.
    answers: HashMap<String, (bool, bool)>,
    calls: Arc<Mutex<Vec<Check>>>,
}

#[zbus::interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl Authority {
    fn check_authorization(
        &self,
        subject: (String, HashMap<String, OwnedValue>),
        action_id: String,
        _details: HashMap<String, String>,
        flags: u32,
        _cancellation_id: String,
    ) -> (bool, bool, HashMap<String, String>) {
        let name = subject
            .1
            .get("name")
            .and_then(|v| v.try_clone().ok())
            .and_then(|v| String::try_from(v).ok())
            .unwrap_or_default();
        self.calls.lock().unwrap().push(Check {
            subject_kind: subject.0,
            subject_name: name,
            action: action_id.clone(),
            flags,
        });
        let (ok, challenge) = self.answers.get(&action_id).copied().unwrap_or_default();
        (ok, challenge, HashMap::new())
    }
}

/// The authority, served from a thread of its own until dropped.
pub struct MockPolkit {
    calls: Arc<Mutex<Vec<Check>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockPolkit {
    /// Serves on `bus` as root with `answers`: (action id, authorized, challenge).
    pub fn start(bus: &str, answers: &[(&str, bool, bool)]) -> MockPolkit {
        MockPolkit::start_as(bus, answers, None)
    }

    /// The same, connected to the bus as `uid` (an impostor, when not root): only its thread
    /// changes uid (the raw syscall, not glibc's process-wide wrapper), and the bus takes the
    /// connection's uid from the socket.
    pub fn start_as(bus: &str, answers: &[(&str, bool, bool)], uid: Option<u32>) -> MockPolkit {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let authority = Authority {
            answers: answers
                .iter()
                .map(|(a, ok, ch)| (a.to_string(), (*ok, *ch)))
                .collect(),
            calls: calls.clone(),
        };
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bus = bus.to_owned();
        let thread = std::thread::spawn(move || {
            if let Some(uid) = uid {
                use nix::libc;
                // SAFETY: a plain syscall on this thread's own credentials.
                let r = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
                assert_eq!(r, 0, "setresuid({uid}) on the mock's thread");
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let conn = zbus::connection::Builder::address(bus.as_str())
                    .and_then(|b| b.serve_at("/org/freedesktop/PolicyKit1/Authority", authority))
                    .and_then(|b| b.name("org.freedesktop.PolicyKit1"));
                let conn = match conn {
                    Ok(b) => b.build().await,
                    Err(e) => Err(e),
                };
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let _ = stopped.await;
                // Closing the connection gives up the name.
                let _ = conn.close().await;
            });
        });
        ready
            .recv()
            .expect("the mock polkit thread")
            .expect("serve the mock polkit authority");
        MockPolkit {
            calls,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn calls(&self) -> Vec<Check> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for MockPolkit {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
