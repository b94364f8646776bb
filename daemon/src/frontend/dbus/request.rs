//! Streaming generations as D-Bus objects: `/org/inferd/Inferd1/request/<id>` with interface
//! `org.inferd.Inferd1.Request`. Its signals go only to the caller (destination set), and only
//! after the method reply that named the object has been sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use inferd_client::Error;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use zbus::message::Header;
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::{interface, Connection};

use crate::work::job::{Channel, Event, FinishReason, Usage};

pub const REQUEST_PATH: &str = "/org/inferd/Inferd1/request";

pub struct Request {
    owner: String,
    cancel: CancellationToken,
    state: Arc<Mutex<&'static str>>,
}

#[interface(name = "org.inferd.Inferd1.Request")]
impl Request {
    /// Ends the generation with finish reason `cancelled` within one decode step. Only the caller
    /// that started it may cancel it.
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
        self.cancel.cancel();
        Ok(())
    }

    /// `running`, `finished`, `cancelled`, `timeout` or `failed`.
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

pub fn info_dict(
    request_id: &str,
    reason: Option<FinishReason>,
    usage: &Usage,
    reasoning: Option<&str>,
    tool_calls: Option<&str>,
) -> HashMap<String, OwnedValue> {
    let mut d = HashMap::new();
    let mut put = |k: &str, v: Value<'_>| {
        if let Ok(v) = v.try_to_owned() {
            d.insert(k.to_owned(), v);
        }
    };
    put("request_id", Value::from(request_id));
    if let Some(r) = reason {
        put("finish_reason", Value::from(r.as_str()));
    }
    if let Some(r) = reasoning {
        put("reasoning", Value::from(r));
    }
    if let Some(c) = tool_calls {
        put("tool_calls", Value::from(c));
    }
    put("prompt_tokens", Value::from(usage.prompt_tokens));
    put(
        "cached_prompt_tokens",
        Value::from(usage.cached_prompt_tokens),
    );
    put("completion_tokens", Value::from(usage.completion_tokens));
    put("reasoning_tokens", Value::from(usage.reasoning_tokens));
    put(
        "time_to_first_token_ms",
        Value::from(usage.time_to_first_token_ms),
    );
    put("tokens_per_second", Value::from(usage.tokens_per_second));
    d
}

/// Serves a request object and forwards its events as unicast signals. `sent` fires once the
/// method reply naming the object is on the wire.
pub async fn publish(
    conn: Connection,
    path: OwnedObjectPath,
    owner: String,
    cancel: CancellationToken,
    request_id: String,
    mut events: UnboundedReceiver<Event>,
) -> Result<impl std::future::Future<Output = ()>, Error> {
    let destination = BusName::try_from(owner.clone())
        .map_err(|e| Error::Internal(format!("caller name {owner:?}: {e}")))?
        .into_owned();
    let emitter = SignalEmitter::new(&conn, path.clone())?
        .into_owned()
        .set_destination(destination);
    let state = Arc::new(Mutex::new("running"));
    let object = Request {
        owner: owner.clone(),
        cancel: cancel.clone(),
        state: state.clone(),
    };
    let added = conn.object_server().at(&path, object).await?;
    if !added {
        return Err(Error::InvalidInput(format!(
            "request {path} already exists; use another handle_token"
        )));
    }
    let forward = async move {
        let set = |s: &'static str| {
            if let Ok(mut g) = state.lock() {
                *g = s;
            }
        };
        while let Some(ev) = events.recv().await {
            let sent = match ev {
                Event::Delta { text, channel } => {
                    Request::delta(&emitter, &text, channel_name(channel)).await
                }
                Event::Finished { reason, usage } => {
                    set(match reason {
                        FinishReason::Cancelled => "cancelled",
                        FinishReason::Timeout => "timeout",
                        _ => "finished",
                    });
                    let r = Request::finished(
                        &emitter,
                        reason.as_str(),
                        info_dict(&request_id, Some(reason), &usage, None, None),
                    )
                    .await;
                    log_send(&path, r);
                    break;
                }
                Event::Failed(e) => {
                    set("failed");
                    let wire = super::errors::for_request(e, &request_id);
                    let r = Request::failed(
                        &emitter,
                        &format!("org.inferd.Inferd1.Error.{}", wire.short_name()),
                        &wire.message(),
                    )
                    .await;
                    log_send(&path, r);
                    break;
                }
            };
            log_send(&path, sent);
        }
        // The caller has its last signal; the object goes away with the request.
        let _ = conn.object_server().remove::<Request, _>(&path).await;
    };
    Ok(forward)
}

fn channel_name(c: Channel) -> &'static str {
    c.as_str()
}

fn log_send(path: &OwnedObjectPath, r: zbus::Result<()>) {
    if let Err(e) = r {
        tracing::debug!("request {path}: signal not sent: {e}");
    }
}
