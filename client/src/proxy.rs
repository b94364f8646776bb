//! Typed client proxy for `org.inferd.Inferd1`.

use std::collections::HashMap;

use zbus::proxy;
use zbus::zvariant::{OwnedValue, Value};

use crate::tensor::WireTensor;
use crate::Error;

#[proxy(
    interface = "org.inferd.Inferd1",
    default_service = "org.inferd.Inferd1",
    default_path = "/org/inferd/Inferd1"
)]
pub trait Inferd1 {
    fn list_models(&self) -> Result<Vec<HashMap<String, OwnedValue>>, Error>;
    // Management calls may make polkit ask an agent for a password.
    #[zbus(allow_interactive_auth)]
    fn load_model(&self, name: &str) -> Result<(), Error>;
    #[zbus(allow_interactive_auth)]
    fn unload_model(&self, name: &str) -> Result<(), Error>;
    #[zbus(allow_interactive_auth)]
    fn reload(&self) -> Result<(), Error>;
    #[zbus(allow_interactive_auth)]
    fn warmup(&self, name: &str) -> Result<HashMap<String, OwnedValue>, Error>;
    #[zbus(allow_interactive_auth)]
    fn start_load_model(
        &self,
        name: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<zbus::zvariant::OwnedObjectPath, Error>;
    #[zbus(allow_interactive_auth)]
    fn start_warmup(
        &self,
        name: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<zbus::zvariant::OwnedObjectPath, Error>;
    #[zbus(allow_interactive_auth)]
    fn start_reload(
        &self,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<zbus::zvariant::OwnedObjectPath, Error>;
    fn health(&self) -> Result<HashMap<String, OwnedValue>, Error>;
    fn embed(
        &self,
        model: &str,
        texts: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Vec<Vec<f64>>, Error>;
    fn embed_with_info(
        &self,
        model: &str,
        texts: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> Result<(Vec<Vec<f64>>, HashMap<String, OwnedValue>), Error>;
    fn classify(
        &self,
        model: &str,
        texts: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> Result<Vec<Vec<(String, f64)>>, Error>;
    fn infer(
        &self,
        model: &str,
        inputs: HashMap<String, WireTensor>,
    ) -> Result<HashMap<String, WireTensor>, Error>;

    fn complete(
        &self,
        model: &str,
        prompt: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<(String, HashMap<String, OwnedValue>), Error>;
    fn chat_complete(
        &self,
        model: &str,
        messages: &[(&str, &str)],
        options: HashMap<&str, Value<'_>>,
    ) -> Result<(String, HashMap<String, OwnedValue>), Error>;
    fn generate(
        &self,
        model: &str,
        prompt: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<zbus::zvariant::OwnedObjectPath, Error>;
    fn chat(
        &self,
        model: &str,
        messages: &[(&str, &str)],
        options: HashMap<&str, Value<'_>>,
    ) -> Result<zbus::zvariant::OwnedObjectPath, Error>;

    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn providers(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn runtime_version(&self) -> zbus::Result<String>;

    #[zbus(signal)]
    fn model_state_changed(&self, name: String, state: String) -> zbus::Result<()>;
}

/// One model, `/org/inferd/Inferd1/models/<escaped name>` (see `names::model_path`); the same
/// values as its `ListModels` entry.
#[proxy(
    interface = "org.inferd.Inferd1.Model",
    default_service = "org.inferd.Inferd1"
)]
pub trait Model {
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn kind(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn provider(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn memory_bytes(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn queue_depth(&self) -> zbus::Result<u32>;
}

/// One streaming generation or background job, `/org/inferd/Inferd1/request/<id>`.
#[proxy(
    interface = "org.inferd.Inferd1.Request",
    default_service = "org.inferd.Inferd1"
)]
pub trait Request {
    fn cancel(&self) -> Result<(), Error>;

    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;

    #[zbus(signal)]
    fn delta(&self, text: String, channel: String) -> zbus::Result<()>;

    #[zbus(signal)]
    fn finished(
        &self,
        finish_reason: String,
        info: HashMap<String, OwnedValue>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    fn failed(&self, error_name: String, message: String) -> zbus::Result<()>;
}
