//! Frontends translate a transport's requests into engine calls and map errors at their edge.

pub mod dbus;
pub mod http;
pub mod mqtt;
pub mod options;
