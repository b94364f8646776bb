//! The wire contract between `inferd` and its clients: D-Bus names, error names, wire types, a
//! typed zbus proxy, and an MQTT client. The daemon depends on this crate so the two cannot drift apart.

pub mod error;
pub mod health;
pub mod messages;
pub mod mqtt;
pub mod names;
pub mod proxy;
pub mod status;
pub mod stream;
pub mod tensor;

pub use error::Error;
pub use health::{Health, MemoryPool};
pub use proxy::{Inferd1Proxy, RequestProxy};
pub use status::{KvCache, ModelState, ModelStatus};
pub use tensor::{DType, WireTensor};
