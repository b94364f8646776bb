//! Request objects from the client side (streaming generations and background jobs): subscribe
//! to the object's signals before the call (its path is known in advance through
//! `handle_token`), then call, so no signal is missed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::stream::{BoxStream, StreamExt};
use zbus::zvariant::{OwnedValue, Value};
use zbus::Connection;

use crate::names::REQUEST_PATH;
use crate::{Error, Inferd1Proxy, RequestProxy};

/// What a streaming generation sends.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    Delta {
        text: String,
        channel: String,
    },
    Finished {
        reason: String,
        info: HashMap<String, OwnedValue>,
    },
    Failed {
        name: String,
        message: String,
    },
}

/// The prompt of a streaming call.
pub enum Input<'a> {
    Prompt(&'a str),
    Messages(&'a [(&'a str, &'a str)]),
}

/// A management call's background form.
#[derive(Debug, Clone, Copy)]
pub enum Job<'a> {
    Load(&'a str),
    Warmup(&'a str),
    Reload,
}

pub struct Stream {
    pub request: RequestProxy<'static>,
    events: BoxStream<'static, StreamEvent>,
}

static TOKENS: AtomicU64 = AtomicU64::new(0);

impl Stream {
    /// Subscribes, then starts `Generate` or `Chat` on `model`.
    pub async fn start(
        conn: &Connection,
        model: &str,
        input: Input<'_>,
        mut options: HashMap<&str, Value<'_>>,
    ) -> Result<Stream, Error> {
        Stream::open(conn, |proxy, token| async move {
            options.insert("handle_token", Value::from(token));
            match input {
                Input::Prompt(p) => proxy.generate(model, p, options).await,
                Input::Messages(m) => proxy.chat(model, m, options).await,
            }
        })
        .await
    }

    /// Subscribes, then starts `job`; it ends with `Finished("done", info)` or `Failed`.
    pub async fn job(conn: &Connection, job: Job<'_>) -> Result<Stream, Error> {
        Stream::open(conn, |proxy, token| async move {
            let options = HashMap::from([("handle_token", Value::from(token))]);
            match job {
                Job::Load(name) => proxy.start_load_model(name, options).await,
                Job::Warmup(name) => proxy.start_warmup(name, options).await,
                Job::Reload => proxy.start_reload(options).await,
            }
        })
        .await
    }

    /// Subscribes to the request object a call with a fresh `handle_token` will make, then
    /// makes the call.
    async fn open<F, Fut>(conn: &Connection, call: F) -> Result<Stream, Error>
    where
        F: FnOnce(Inferd1Proxy<'static>, String) -> Fut,
        Fut: Future<Output = Result<zbus::zvariant::OwnedObjectPath, Error>>,
    {
        let unique = conn
            .unique_name()
            .ok_or_else(|| Error::Internal("connection has no unique name".into()))?;
        let token = format!(
            "c{}_{}",
            std::process::id(),
            TOKENS.fetch_add(1, Ordering::Relaxed)
        );
        let path = format!(
            "{REQUEST_PATH}/{}_{token}",
            unique.trim_start_matches(':').replace('.', "_")
        );
        let request = RequestProxy::builder(conn)
            .path(path)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        // One stream of all the object's signals, so a Delta is never seen after its Finished
        // (separate per-signal streams merged would lose that order).
        let events = request
            .inner()
            .receive_all_signals()
            .await?
            .filter_map(|m| async move {
                let member = m.header().member()?.to_string();
                let body = m.body();
                match member.as_str() {
                    "Delta" => body
                        .deserialize::<(String, String)>()
                        .ok()
                        .map(|(text, channel)| StreamEvent::Delta { text, channel }),
                    "Finished" => body
                        .deserialize::<(String, HashMap<String, OwnedValue>)>()
                        .ok()
                        .map(|(reason, info)| StreamEvent::Finished { reason, info }),
                    "Failed" => body
                        .deserialize::<(String, String)>()
                        .ok()
                        .map(|(name, message)| StreamEvent::Failed { name, message }),
                    _ => None,
                }
            })
            .boxed();
        call(Inferd1Proxy::new(conn).await?, token).await?;
        Ok(Stream { request, events })
    }

    /// Waits for the end: `Finished`'s info, or `Failed` as its typed error. Deltas are
    /// skipped (the info of a generation's `Finished` has the whole `content`).
    pub async fn wait(mut self) -> Result<HashMap<String, OwnedValue>, Error> {
        while let Some(ev) = self.next().await {
            match ev {
                StreamEvent::Delta { .. } => {}
                StreamEvent::Finished { info, .. } => return Ok(info),
                StreamEvent::Failed { name, message } => {
                    return Err(Error::from_wire(&name, message))
                }
            }
        }
        Err(Error::Internal(
            "the connection closed before the request ended".into(),
        ))
    }

    /// The next event; `None` only if the connection closed.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        self.events.next().await
    }
}
