//! Versioned D-Bus names. Bumping the `1` is the only way to break the wire contract.

/// Well-known bus name the daemon owns.
pub const BUS_NAME: &str = "org.inferd.Inferd1";
/// Object path of the main service object.
pub const OBJECT_PATH: &str = "/org/inferd/Inferd1";
/// Interface of the main service object.
pub const INTERFACE: &str = "org.inferd.Inferd1";
/// Parent of every streaming request object.
pub const REQUEST_PATH: &str = "/org/inferd/Inferd1/request";
/// Prefix of every typed error name.
pub const ERROR_PREFIX: &str = "org.inferd.Inferd1.Error";
