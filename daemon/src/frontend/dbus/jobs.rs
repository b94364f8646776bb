//! Background forms of the management calls that can outlast a D-Bus client's default 25 s
//! timeout (a TensorRT engine build takes minutes): the method returns a request object at once,
//! and its `Finished("done", info)` or `Failed` signal says how the work ended.

use std::collections::HashMap;
use std::future::Future;

use inferd_client::Error;
use zbus::message::Header;
use zbus::object_server::ResponseDispatchNotifier;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::Connection;

use super::options::{Dict, Options};
use super::request::{request_path, Served};
use crate::frontend::options::only;

pub type Info = HashMap<String, OwnedValue>;

/// Runs `work` as a job of the message's sender, named by option `handle_token` (else
/// `fallback`); the object's signals start once the reply naming it is sent.
pub async fn start(
    hdr: &Header<'_>,
    conn: &Connection,
    options: &Dict,
    fallback: String,
    work: impl Future<Output = Result<Info, Error>> + Send + 'static,
) -> Result<ResponseDispatchNotifier<OwnedObjectPath>, Error> {
    only(options, &["handle_token"])?;
    let sender = hdr
        .sender()
        .map(|s| s.as_str().to_owned())
        .ok_or_else(|| Error::InvalidInput("jobs need a sender".into()))?;
    let token = options.string("handle_token")?.unwrap_or(fallback);
    let path = request_path(&sender, &token)?;
    let served = Served::new(conn, path.clone(), sender, None).await?;
    let (reply, sent) = ResponseDispatchNotifier::new(path);
    tokio::spawn(async move {
        let result = work.await;
        sent.await;
        match result {
            Ok(info) => served.finished("finished", "done", info).await,
            Err(e) => served.failed(e).await,
        }
    });
    Ok(reply)
}
