//! The `org.inferd.Inferd1` object: thin adapters that validate, hand work to the engine, and
//! map its errors. Methods take `&self` so calls run concurrently.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use inferd_client::{Error, WireTensor};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{interface, Connection};

use super::auth::Auth;
use super::callers::Callers;
use super::options::{self, Dict};
use crate::engine::job::{EmbedOutput, EmbedRequest, Tensors};
use crate::engine::Engine;
use crate::tensor::Tensor;

pub struct Service {
    pub engine: Engine,
    pub auth: Auth,
    pub callers: Callers,
    pub runtime_version: String,
    pub providers: Vec<String>,
}

const EMBED_OPTIONS: [&str; 2] = ["timeout_ms", "truncate"];

impl Service {
    /// Runs `work` unless the caller leaves the bus first; then the work is dropped.
    async fn for_caller<T>(
        &self,
        hdr: &Header<'_>,
        work: impl Future<Output = crate::error::Result<T>>,
    ) -> Result<T, Error> {
        let Some(sender) = hdr.sender() else {
            return work.await.map_err(Error::from);
        };
        let token = self.callers.token(sender.as_str());
        tokio::select! {
            r = work => r.map_err(Error::from),
            _ = token.cancelled() => Err(crate::error::Error::Cancelled.into()),
        }
    }

    async fn embed_output(
        &self,
        hdr: &Header<'_>,
        model: String,
        texts: Vec<String>,
        opts: Dict,
    ) -> Result<EmbedOutput, Error> {
        options::only(&opts, &EMBED_OPTIONS)?;
        let timeout = options::uint(&opts, "timeout_ms")?.map(Duration::from_millis);
        let truncate = options::boolean(&opts, "truncate")?.unwrap_or(true);
        let req = EmbedRequest { texts, truncate };
        self.for_caller(hdr, self.engine.embed(&model, req, timeout))
            .await
    }
}

fn widen(vectors: Vec<Vec<f32>>) -> Vec<Vec<f64>> {
    vectors
        .into_iter()
        .map(|v| v.into_iter().map(f64::from).collect())
        .collect()
}

fn owned(v: Value<'_>) -> OwnedValue {
    // Values without file descriptors always convert.
    v.try_to_owned().unwrap_or_else(|_| OwnedValue::from(0u8))
}

#[interface(name = "org.inferd.Inferd1")]
impl Service {
    /// Every model in the repository with its state, provider and counters.
    async fn list_models(&self) -> Vec<HashMap<String, OwnedValue>> {
        self.engine.list().iter().map(|s| s.to_dict()).collect()
    }

    /// Loads or reloads one model; returns once it is ready. Administrators only.
    async fn load_model(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), Error> {
        self.auth.check(conn, &hdr, "LoadModel").await?;
        Ok(self.engine.load(&name).await?)
    }

    /// Stops serving a model. Administrators only.
    async fn unload_model(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), Error> {
        self.auth.check(conn, &hdr, "UnloadModel").await?;
        Ok(self.engine.unload(&name)?)
    }

    /// Rescans the repository. Administrators only.
    async fn reload(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), Error> {
        self.auth.check(conn, &hdr, "Reload").await?;
        Ok(self.engine.reload().await?)
    }

    /// One vector per text.
    async fn embed(
        &self,
        model: String,
        texts: Vec<String>,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<Vec<f64>>, Error> {
        let out = self.embed_output(&hdr, model, texts, options).await?;
        Ok(widen(out.vectors))
    }

    /// Like `Embed`, plus per-text `truncated` (ab) and `tokens` (au).
    async fn embed_with_info(
        &self,
        model: String,
        texts: Vec<String>,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(Vec<Vec<f64>>, HashMap<String, OwnedValue>), Error> {
        let out = self.embed_output(&hdr, model, texts, options).await?;
        let info = HashMap::from([
            ("truncated".to_owned(), owned(Value::from(out.truncated))),
            ("tokens".to_owned(), owned(Value::from(out.tokens))),
        ]);
        Ok((widen(out.vectors), info))
    }

    /// Named tensors in, named tensors out: `(dtype, shape, little-endian bytes)`.
    async fn infer(
        &self,
        model: String,
        inputs: HashMap<String, WireTensor>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<HashMap<String, WireTensor>, Error> {
        let inputs = inputs
            .into_iter()
            .map(|(name, t)| Ok((name.clone(), Tensor::from_wire(&name, t)?)))
            .collect::<crate::error::Result<Tensors>>()?;
        let out = self
            .for_caller(&hdr, self.engine.infer(&model, inputs))
            .await?;
        Ok(out.into_iter().map(|(k, t)| (k, t.into_wire())).collect())
    }

    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// Execution providers compiled into the loaded ONNX Runtime.
    #[zbus(property)]
    fn providers(&self) -> Vec<String> {
        self.providers.clone()
    }

    #[zbus(property)]
    fn runtime_version(&self) -> String {
        self.runtime_version.clone()
    }

    #[zbus(signal)]
    pub async fn model_state_changed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        state: &str,
    ) -> zbus::Result<()>;
}
