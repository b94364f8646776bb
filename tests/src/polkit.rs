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

/// The authority, served until dropped.
pub struct MockPolkit {
    calls: Arc<Mutex<Vec<Check>>>,
    conn: Option<zbus::Connection>,
    runtime: tokio::runtime::Runtime,
}

impl MockPolkit {
    /// Serves on `bus` with `answers`: (action id, authorized, challenge).
    pub fn start(bus: &str, answers: &[(&str, bool, bool)]) -> MockPolkit {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let authority = Authority {
            answers: answers
                .iter()
                .map(|(a, ok, ch)| (a.to_string(), (*ok, *ch)))
                .collect(),
            calls: calls.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let conn = runtime
            .block_on(async {
                zbus::connection::Builder::address(bus)?
                    .serve_at("/org/freedesktop/PolicyKit1/Authority", authority)?
                    .name("org.freedesktop.PolicyKit1")?
                    .build()
                    .await
            })
            .expect("serve the mock polkit authority");
        MockPolkit {
            calls,
            conn: Some(conn),
            runtime,
        }
    }

    pub fn calls(&self) -> Vec<Check> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for MockPolkit {
    fn drop(&mut self) {
        // Closing the connection gives up the name.
        if let Some(conn) = self.conn.take() {
            let _ = self.runtime.block_on(conn.close());
        }
    }
}
