//! Typed D-Bus errors, `org.inferd.Inferd1.Error.*`.
//!
//! Clients must be able to tell an overload from a bad input, so nothing is flattened to
//! `org.freedesktop.DBus.Error.Failed`.

use zbus::DBusError;

#[derive(Debug, DBusError)]
#[zbus(prefix = "org.inferd.Inferd1.Error")]
pub enum Error {
    /// Transport or protocol failure, not an answer from the daemon.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No model of that name is in the repository.
    ModelNotFound(String),
    /// The model exists but is loading, failed or unloaded.
    ModelNotReady(String),
    /// The request does not fit the model: names, dtypes, shapes, options.
    InvalidInput(String),
    /// The model's queue is full; retry later.
    Overloaded(String),
    /// The request's deadline passed before it could run.
    Timeout(String),
    /// The caller may not use this method.
    AccessDenied(String),
    /// The daemon is stopping and takes no new work.
    ShuttingDown(String),
    /// The request was cancelled (by its caller, or because the caller left).
    Cancelled(String),
    /// A bug or runtime failure inside the daemon.
    Internal(String),
}

impl Error {
    /// Rebuilds a typed error from a name and message carried in a signal (`Failed`).
    pub fn from_wire(name: &str, message: String) -> Error {
        match name.rsplit('.').next().unwrap_or_default() {
            "ModelNotFound" => Error::ModelNotFound(message),
            "ModelNotReady" => Error::ModelNotReady(message),
            "InvalidInput" => Error::InvalidInput(message),
            "Overloaded" => Error::Overloaded(message),
            "Timeout" => Error::Timeout(message),
            "AccessDenied" => Error::AccessDenied(message),
            "ShuttingDown" => Error::ShuttingDown(message),
            "Cancelled" => Error::Cancelled(message),
            _ => Error::Internal(message),
        }
    }

    /// The last component of the D-Bus error name, e.g. `Overloaded`.
    pub fn short_name(&self) -> String {
        match self {
            Error::ZBus(zbus::Error::MethodError(name, _, _)) => name
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned(),
            Error::ZBus(_) => "Bus".to_owned(),
            other => zbus::DBusError::name(other)
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// The human-readable message carried by the error.
    pub fn message(&self) -> String {
        match self {
            Error::ZBus(zbus::Error::MethodError(_, Some(desc), _)) => desc.clone(),
            Error::ZBus(e) => e.to_string(),
            other => zbus::DBusError::description(other)
                .unwrap_or_default()
                .to_owned(),
        }
    }
}
