//! Streaming generation from the client side: subscribe to the request object's signals before
//! the call (its path is known in advance through `handle_token`), then call, so no signal is
//! missed.

use std::collections::HashMap;
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
        options.insert("handle_token", Value::from(token));
        let proxy = Inferd1Proxy::new(conn).await?;
        match input {
            Input::Prompt(p) => proxy.generate(model, p, options).await?,
            Input::Messages(m) => proxy.chat(model, m, options).await?,
        };
        Ok(Stream { request, events })
    }

    /// The next event; `None` only if the connection closed.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        self.events.next().await
    }
}
