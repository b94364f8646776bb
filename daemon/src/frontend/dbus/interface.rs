//! The `org.inferd.Inferd1` object: thin adapters that validate, hand work to the engine, and
//! map its errors. Methods take `&self` so calls run concurrently.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use inferd_client::{Error, WireTensor};
use zbus::message::Header;
use zbus::object_server::{ResponseDispatchNotifier, SignalEmitter};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{interface, Connection};

use super::auth::Auth;
use super::callers::Callers;
use super::errors::for_request;
use super::jobs;
use super::options::{owned, Dict, Options};
use super::polkit::Action;
use super::request;
use crate::engine::Engine;
use crate::frontend::options;
use crate::tensor::Tensor;
use crate::work::job::{
    self, EmbedOutput, Event, GenerateRequest, Priority, Prompt, Tensors, Ticket, Transport,
};

pub struct Service {
    pub engine: Engine,
    pub auth: Auth,
    pub callers: Callers,
    /// The ONNX Runtime library, probed at start, loaded by the first model.
    pub runtime: std::sync::Arc<crate::runtime::Runtime>,
    /// Numbers requests (their ids, and request objects whose caller gave no handle_token).
    pub requests: AtomicU64,
}

/// A typed D-Bus error whose message names the request.
type Failure = Error;

type Info = HashMap<String, OwnedValue>;

impl Service {
    /// A new request's ticket: D-Bus requests are interactive unless their options say not.
    fn ticket(&self) -> Ticket {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let id = format!("d{}-{n}", std::process::id());
        Ticket::new(id, Transport::Dbus, Priority::Interactive)
    }

    /// Runs `work` unless the caller leaves the bus first; then the work is dropped.
    async fn for_caller<T>(
        &self,
        hdr: &Header<'_>,
        t: &Ticket,
        work: impl Future<Output = crate::error::Result<T>>,
    ) -> Result<T, Failure> {
        let cancelled = async {
            match hdr.sender() {
                Some(sender) => self.callers.token(sender.as_str()).cancelled_owned().await,
                None => std::future::pending().await,
            }
        };
        let r = tokio::select! {
            r = work => r,
            _ = cancelled => Err(crate::error::Error::Cancelled),
        };
        r.map_err(|e| for_request(e, &t.id))
    }

    /// Authorizes `method`, then runs `work` as a background job of the caller's (named by
    /// its `handle_token`, else by a number).
    async fn job(
        &self,
        hdr: &Header<'_>,
        conn: &Connection,
        options: &Dict,
        method: &str,
        action: Action,
        work: impl Future<Output = Result<jobs::Info, Error>> + Send + 'static,
    ) -> Result<ResponseDispatchNotifier<OwnedObjectPath>, Error> {
        self.auth.check(conn, hdr, method, action).await?;
        let token = format!("j{}", self.requests.fetch_add(1, Ordering::Relaxed));
        jobs::start(hdr, conn, options, token, work).await
    }

    async fn embed_output(
        &self,
        hdr: &Header<'_>,
        model: String,
        texts: Vec<String>,
        opts: Dict,
    ) -> Result<(EmbedOutput, Ticket), Failure> {
        let mut t = self.ticket();
        let req = options::embedding(&opts, texts, &mut t).map_err(|e| for_request(e, &t.id))?;
        let out = self
            .for_caller(hdr, &t, self.engine.embed(&model, req, &t))
            .await?;
        Ok((out, t))
    }
}

impl Service {
    /// Starts a generation for the message's sender; cancelled if the sender leaves the bus.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        hdr: &Header<'_>,
        conn: &Connection,
        t: &mut Ticket,
        model: &str,
        prompt: Prompt,
        opts: &Dict,
        stream: bool,
    ) -> crate::error::Result<(
        tokio::sync::mpsc::UnboundedReceiver<Event>,
        tokio_util::sync::CancellationToken,
    )> {
        let options = options::generation(opts, t)?;
        if let Some(sender) = hdr.sender() {
            t.caller = self.callers.identity(conn, sender.as_str()).await;
        }
        let req = GenerateRequest::new(prompt, options).streamed(stream);
        let cancel = match hdr.sender() {
            Some(s) => self.callers.token(s.as_str()).child_token(),
            None => Default::default(),
        };
        let rx = self.engine.generate(model, req, t, cancel.clone()).await?;
        Ok((rx, cancel))
    }

    async fn complete_inner(
        &self,
        hdr: &Header<'_>,
        conn: &Connection,
        model: &str,
        prompt: Prompt,
        opts: Dict,
    ) -> Result<(String, Info), Failure> {
        let mut t = self.ticket();
        let work = async {
            let (rx, _cancel) = self
                .start(hdr, conn, &mut t, model, prompt, &opts, false)
                .await?;
            let c = job::collect(rx).await?;
            let info = request::info(&t.id, &c);
            Ok((c.content, info))
        };
        let r: crate::error::Result<_> = work.await;
        r.map_err(|e| for_request(e, &t.id))
    }

    async fn stream_inner(
        &self,
        hdr: &Header<'_>,
        conn: &Connection,
        model: &str,
        prompt: Prompt,
        opts: Dict,
    ) -> Result<ResponseDispatchNotifier<OwnedObjectPath>, Failure> {
        let sender = hdr
            .sender()
            .map(|s| s.as_str().to_owned())
            .ok_or_else(|| Error::InvalidInput("streaming calls need a sender".into()))?;
        let mut t = self.ticket();
        let token = match opts.string("handle_token")? {
            Some(token) => token,
            None => format!("r{}", t.id.rsplit('-').next().unwrap_or_default()),
        };
        let path = request::request_path(&sender, &token)?;
        let (rx, cancel) = self
            .start(hdr, conn, &mut t, model, prompt, &opts, true)
            .await
            .map_err(|e| for_request(e, &t.id))?;
        let forward = request::publish(conn, path.clone(), sender, cancel, t.id, rx).await?;
        let (reply, sent) = ResponseDispatchNotifier::new(path);
        tokio::spawn(async move {
            sent.await;
            forward.await;
        });
        Ok(reply)
    }
}

/// `a(ss)` messages: role and text (tool calls come back as text in an assistant's content).
fn chat_prompt(messages: Vec<(String, String)>) -> Prompt {
    Prompt::Chat(
        messages
            .into_iter()
            .map(|(role, content)| crate::chat::Message::new(role, content))
            .collect(),
    )
}

fn widen(vectors: Vec<Vec<f32>>) -> Vec<Vec<f64>> {
    vectors
        .into_iter()
        .map(|v| v.into_iter().map(f64::from).collect())
        .collect()
}

#[interface(name = "org.inferd.Inferd1")]
impl Service {
    /// Every model in the repository with its state, provider and counters.
    #[zbus(out_args("models"))]
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
        self.auth
            .check(conn, &hdr, "LoadModel", Action::ManageModels)
            .await?;
        Ok(self.engine.load(&name).await?)
    }

    /// Stops serving a model. Administrators only.
    async fn unload_model(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), Error> {
        self.auth
            .check(conn, &hdr, "UnloadModel", Action::ManageModels)
            .await?;
        Ok(self.engine.unload(&name)?)
    }

    /// `LoadModel` in the background: returns a request object at once, whose
    /// `Finished("done", entry)` or `Failed` signal ends the load. Administrators only.
    #[zbus(out_args("job"))]
    async fn start_load_model(
        &self,
        name: String,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<ResponseDispatchNotifier<OwnedObjectPath>, Error> {
        let engine = self.engine.clone();
        let work = async move {
            engine.load(&name).await?;
            let entry = engine.status(&name).map(|m| m.to_dict());
            Ok(entry.unwrap_or_default())
        };
        let action = Action::ManageModels;
        self.job(&hdr, conn, &options, "StartLoadModel", action, work)
            .await
    }

    /// `Warmup` in the background (a TensorRT engine build takes minutes). Administrators only.
    #[zbus(out_args("job"))]
    async fn start_warmup(
        &self,
        name: String,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<ResponseDispatchNotifier<OwnedObjectPath>, Error> {
        let engine = self.engine.clone();
        let work = async move { Ok(engine.warmup(&name).await?.to_dict()) };
        self.job(&hdr, conn, &options, "StartWarmup", Action::Warmup, work)
            .await
    }

    /// `Reload` in the background; `Finished` comes once every load has ended. Administrators
    /// only.
    #[zbus(out_args("job"))]
    async fn start_reload(
        &self,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<ResponseDispatchNotifier<OwnedObjectPath>, Error> {
        let engine = self.engine.clone();
        let work = async move {
            engine.reload().await?;
            Ok(jobs::Info::new())
        };
        let action = Action::ManageModels;
        self.job(&hdr, conn, &options, "StartReload", action, work)
            .await
    }

    /// Loads the model if needed and returns once it is on its final provider (a TensorRT
    /// engine built), with its status. Administrators only.
    #[zbus(out_args("model"))]
    async fn warmup(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<HashMap<String, OwnedValue>, Error> {
        self.auth
            .check(conn, &hdr, "Warmup", Action::Warmup)
            .await?;
        Ok(self.engine.warmup(&name).await?.to_dict())
    }

    /// Overall status, version, uptime, RSS, and per model: state, provider, queue depth,
    /// last error, memory and idle time. Anyone may call it.
    #[zbus(out_args("health"))]
    async fn health(&self) -> HashMap<String, OwnedValue> {
        crate::health::check(&self.engine).to_dict()
    }

    /// Rescans the repository. Administrators only.
    async fn reload(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), Error> {
        self.auth
            .check(conn, &hdr, "Reload", Action::ManageModels)
            .await?;
        Ok(self.engine.reload().await?)
    }

    /// One vector per text.
    #[zbus(out_args("vectors"))]
    async fn embed(
        &self,
        model: String,
        texts: Vec<String>,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<Vec<f64>>, Error> {
        let (out, _) = self.embed_output(&hdr, model, texts, options).await?;
        Ok(widen(out.vectors))
    }

    /// Like `Embed`, plus per-text `truncated` (ab) and `tokens` (au), and `request_id`.
    #[zbus(out_args("vectors", "info"))]
    async fn embed_with_info(
        &self,
        model: String,
        texts: Vec<String>,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(Vec<Vec<f64>>, HashMap<String, OwnedValue>), Error> {
        let (out, t) = self.embed_output(&hdr, model, texts, options).await?;
        let info = HashMap::from([
            ("truncated".to_owned(), owned(out.truncated)),
            ("tokens".to_owned(), owned(out.tokens)),
            ("request_id".to_owned(), owned(t.id)),
        ]);
        Ok((widen(out.vectors), info))
    }

    /// Per text: `(label, probability)` pairs, best first (option `top_k`, default all).
    #[zbus(out_args("labels"))]
    async fn classify(
        &self,
        model: String,
        texts: Vec<String>,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<Vec<(String, f64)>>, Error> {
        let mut t = self.ticket();
        let (req, top_k) =
            options::classification(&options, texts, &mut t).map_err(|e| for_request(e, &t.id))?;
        let out = self
            .for_caller(&hdr, &t, self.engine.classify(&model, req, top_k, &t))
            .await?;
        Ok(out
            .into_iter()
            .map(|row| row.into_iter().map(|(l, p)| (l, f64::from(p))).collect())
            .collect())
    }

    /// Named tensors in, named tensors out: `(dtype, shape, little-endian bytes)`.
    #[zbus(out_args("outputs"))]
    async fn infer(
        &self,
        model: String,
        inputs: HashMap<String, WireTensor>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<HashMap<String, WireTensor>, Error> {
        let t = self.ticket();
        let inputs = inputs
            .into_iter()
            .map(|(name, w)| Ok((name.clone(), Tensor::from_wire(&name, w)?)))
            .collect::<crate::error::Result<Tensors>>()
            .map_err(|e| for_request(e, &t.id))?;
        let out = self
            .for_caller(&hdr, &t, self.engine.infer(&model, inputs, &t))
            .await?;
        Ok(out.into_iter().map(|(k, t)| (k, t.into_wire())).collect())
    }

    /// Generates from a raw prompt (no template; special tokens in it are parsed) and returns
    /// the whole text with `info` (finish_reason, usage, reasoning). Options `response_format`,
    /// `regex` and `grammar` constrain the text.
    #[zbus(out_args("text", "info"))]
    async fn complete(
        &self,
        model: String,
        prompt: String,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, Info), Error> {
        self.complete_inner(&hdr, conn, &model, Prompt::Text(prompt), options)
            .await
    }

    /// Like `Complete`, for `(role, content)` messages rendered with the model's chat template.
    /// With option `tools` (OpenAI's list, as JSON text) the model may call them: `info` then
    /// has `tool_calls`, a JSON list of `{"name", "arguments"}`; a `tool` message answers one.
    #[zbus(out_args("text", "info"))]
    async fn chat_complete(
        &self,
        model: String,
        messages: Vec<(String, String)>,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, Info), Error> {
        self.complete_inner(&hdr, conn, &model, chat_prompt(messages), options)
            .await
    }

    /// Starts a streaming generation; returns its request object, whose signals carry the text.
    #[zbus(out_args("request"))]
    async fn generate(
        &self,
        model: String,
        prompt: String,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<ResponseDispatchNotifier<OwnedObjectPath>, Error> {
        self.stream_inner(&hdr, conn, &model, Prompt::Text(prompt), options)
            .await
    }

    /// Streaming `ChatComplete`.
    #[zbus(out_args("request"))]
    async fn chat(
        &self,
        model: String,
        messages: Vec<(String, String)>,
        options: Dict,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<ResponseDispatchNotifier<OwnedObjectPath>, Error> {
        self.stream_inner(&hdr, conn, &model, chat_prompt(messages), options)
            .await
    }

    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// Execution providers compiled into the ONNX Runtime library (known before it loads).
    #[zbus(property)]
    fn providers(&self) -> Vec<String> {
        self.runtime.providers.clone()
    }

    #[zbus(property)]
    fn runtime_version(&self) -> String {
        self.runtime.version.clone()
    }

    /// The ONNX Runtime library's path and the rule that found it, e.g.
    /// `/usr/lib/libonnxruntime.so (system)`.
    #[zbus(property)]
    fn runtime_library(&self) -> String {
        format!("{} ({})", self.runtime.path.display(), self.runtime.source)
    }

    /// Whether a model has loaded the library yet (it loads with the first one).
    #[zbus(property(emits_changed_signal = "false"))]
    fn runtime_loaded(&self) -> bool {
        self.runtime.loaded()
    }

    #[zbus(signal)]
    pub async fn model_state_changed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        state: &str,
    ) -> zbus::Result<()>;
}
