//! Request objects: `/org/inferd/Inferd1/request/<id>` with interface
//! `org.inferd.Inferd1.Request`, one per streaming generation and per background job
//! (`StartLoadModel`, `StartWarmup`, `StartReload`). Their `Delta`/`Finished`/`Failed` signals go
//! only to the caller (destination set), and only after the method reply that named the object
//! has been sent; `State` changes are broadcast as `PropertiesChanged` for `ObjectManager` clients.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use inferd_client::names::{REQUEST_INTERFACE, REQUEST_PATH};
use inferd_client::Error;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use zbus::fdo::Properties;
use zbus::message::Header;
use zbus::names::{BusName, InterfaceName};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::{interface, Connection};

use super::options::owned;
use crate::work::job::{Completion, Event, FinishReason};

type Info = HashMap<String, OwnedValue>;

pub struct Request {
    owner: String,
    /// `None` for jobs, whose work (a load) cannot be abandoned half way.
    cancel: Option<CancellationToken>,
    state: Arc<Mutex<&'static str>>,
}

#[interface(name = "org.inferd.Inferd1.Request")]
impl Request {
    /// Ends the generation with finish reason `cancelled` within one decode step. Only the caller
    /// that started it may cancel it; jobs cannot be cancelled.
    async fn cancel(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), Error> {
        let sender = hdr
            .sender()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if sender != self.owner {
            return Err(Error::AccessDenied(
                "only the caller that started a request may cancel it".into(),
            ));
        }
        match &self.cancel {
            Some(c) => {
                c.cancel();
                Ok(())
            }
            None => Err(Error::InvalidInput(
                "a job cannot be cancelled once started; UnloadModel stops a model".into(),
            )),
        }
    }

    /// `running`, then `finished`, `cancelled`, `timeout` or `failed`.
    #[zbus(property)]
    fn state(&self) -> String {
        self.state.lock().map(|s| s.to_string()).unwrap_or_default()
    }

    #[zbus(signal)]
    async fn delta(emitter: &SignalEmitter<'_>, text: &str, channel: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn finished(
        emitter: &SignalEmitter<'_>,
        finish_reason: &str,
        info: HashMap<String, OwnedValue>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn failed(
        emitter: &SignalEmitter<'_>,
        error_name: &str,
        message: &str,
    ) -> zbus::Result<()>;
}

/// `<caller>_<token>`: the caller's unique name with `:` dropped and `.` as `_`, so a client that
/// passes `handle_token` knows the path before it calls (as xdg-desktop-portal does).
pub fn request_path(sender: &str, token: &str) -> Result<OwnedObjectPath, Error> {
    if token.is_empty()
        || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || token.len() > 64
    {
        return Err(Error::InvalidInput(
            "handle_token must be 1–64 characters of [A-Za-z0-9_]".into(),
        ));
    }
    let caller: String = sender.trim_start_matches(':').replace('.', "_");
    ObjectPath::try_from(format!("{REQUEST_PATH}/{caller}_{token}"))
        .map(OwnedObjectPath::from)
        .map_err(|e| Error::InvalidInput(format!("bad request path: {e}")))
}

/// `Complete`'s info about a whole generation: request id, finish reason, reasoning and tool
/// calls when there were any, and the counts.
pub fn info(request_id: &str, c: &Completion) -> Info {
    let u = &c.usage;
    let mut d: Info = HashMap::from([
        ("request_id".into(), owned(request_id)),
        ("prompt_tokens".into(), owned(u.prompt_tokens)),
        ("cached_prompt_tokens".into(), owned(u.cached_prompt_tokens)),
        ("completion_tokens".into(), owned(u.completion_tokens)),
        ("reasoning_tokens".into(), owned(u.reasoning_tokens)),
        (
            "time_to_first_token_ms".into(),
            owned(u.time_to_first_token_ms),
        ),
        ("tokens_per_second".into(), owned(u.tokens_per_second)),
    ]);
    if let Some(r) = c.reason {
        d.insert("finish_reason".into(), owned(r.as_str()));
    }
    if !c.reasoning.is_empty() {
        d.insert("reasoning".into(), owned(c.reasoning.as_str()));
    }
    if !c.tool_calls.is_empty() {
        d.insert("tool_calls".into(), owned(c.tool_calls_json().to_string()));
    }
    d
}

/// A request object on the bus, from its method reply to its last signal.
pub struct Served {
    conn: Connection,
    path: OwnedObjectPath,
    /// Unicast to the caller.
    emitter: SignalEmitter<'static>,
    state: Arc<Mutex<&'static str>>,
}

impl Served {
    /// Serves the object; the caller must not send signals before its method reply is out.
    pub async fn new(
        conn: &Connection,
        path: OwnedObjectPath,
        owner: String,
        cancel: Option<CancellationToken>,
    ) -> Result<Served, Error> {
        let destination = BusName::try_from(owner.clone())
            .map_err(|e| Error::Internal(format!("caller name {owner:?}: {e}")))?
            .into_owned();
        let emitter = SignalEmitter::new(conn, path.clone())?
            .into_owned()
            .set_destination(destination);
        let state = Arc::new(Mutex::new("running"));
        let object = Request {
            owner,
            cancel,
            state: state.clone(),
        };
        if !conn.object_server().at(&path, object).await? {
            return Err(Error::InvalidInput(format!(
                "request {path} already exists; use another handle_token"
            )));
        }
        Ok(Served {
            conn: conn.clone(),
            path,
            emitter,
            state,
        })
    }

    async fn set_state(&self, s: &'static str) {
        if let Ok(mut g) = self.state.lock() {
            *g = s;
        }
        let sent = async {
            let emitter = SignalEmitter::new(&self.conn, self.path.clone())?;
            let iface = InterfaceName::from_static_str_unchecked(REQUEST_INTERFACE);
            let changed = HashMap::from([("State", Value::from(s))]);
            Properties::properties_changed(&emitter, iface, changed, Cow::Borrowed(&[])).await
        };
        self.log(sent.await);
    }

    pub async fn delta(&self, text: &str, channel: &str) {
        self.log(Request::delta(&self.emitter, text, channel).await);
    }

    /// The last signals: `State`, then `Finished`; the object goes away with them.
    pub async fn finished(self, state: &'static str, reason: &str, info: Info) {
        self.set_state(state).await;
        self.log(Request::finished(&self.emitter, reason, info).await);
        self.remove().await;
    }

    pub async fn failed(self, e: Error) {
        self.set_state("failed").await;
        let name = format!("org.inferd.Inferd1.Error.{}", e.short_name());
        self.log(Request::failed(&self.emitter, &name, &e.message()).await);
        self.remove().await;
    }

    async fn remove(self) {
        let _ = self
            .conn
            .object_server()
            .remove::<Request, _>(&self.path)
            .await;
    }

    fn log(&self, r: zbus::Result<()>) {
        if let Err(e) = r {
            tracing::debug!("request {}: signal not sent: {e}", self.path);
        }
    }
}

/// Serves a generation's request object; the returned future forwards its events as unicast
/// signals and must run only once the method reply naming the object is on the wire.
pub async fn publish(
    conn: &Connection,
    path: OwnedObjectPath,
    owner: String,
    cancel: CancellationToken,
    request_id: String,
    mut events: UnboundedReceiver<Event>,
) -> Result<impl std::future::Future<Output = ()>, Error> {
    let served = Served::new(conn, path, owner, Some(cancel)).await?;
    Ok(async move {
        let mut answer = Completion::default();
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Delta { text, channel } => {
                    answer.add(&text, channel);
                    served.delta(&text, channel.as_str()).await;
                }
                Event::Finished { reason, usage } => {
                    let state = match reason {
                        FinishReason::Cancelled => "cancelled",
                        FinishReason::Timeout => "timeout",
                        _ => "finished",
                    };
                    (answer.reason, answer.usage) = (Some(reason), usage);
                    // With the whole answer, so a client that wants only the end result (the
                    // background form of `Complete`) waits for this one signal.
                    let mut end = info(&request_id, &answer);
                    end.insert("content".into(), owned(answer.content.as_str()));
                    served.finished(state, reason.as_str(), end).await;
                    return;
                }
                Event::Failed(e) => {
                    served
                        .failed(super::errors::for_request(e, &request_id))
                        .await;
                    return;
                }
            }
        }
    })
}
