//! The one place engine errors become D-Bus error names.

use inferd_client::Error as Wire;

use crate::error::Error;

impl From<Error> for Wire {
    fn from(e: Error) -> Wire {
        let msg = e.to_string();
        named(e, msg)
    }
}

/// The error of one request, its message ending with the request id (as in the logs).
pub fn for_request(e: Error, request_id: &str) -> Wire {
    let msg = format!("{e} (request {request_id})");
    named(e, msg)
}

fn named(e: Error, msg: String) -> Wire {
    {
        match e {
            Error::ModelNotFound(_) => Wire::ModelNotFound(msg),
            Error::ModelNotReady { .. } => Wire::ModelNotReady(msg),
            Error::InvalidInput(_) => Wire::InvalidInput(msg),
            Error::Overloaded { .. } => Wire::Overloaded(msg),
            Error::Timeout { .. } => Wire::Timeout(msg),
            Error::ShuttingDown => Wire::ShuttingDown(msg),
            Error::Cancelled => Wire::Cancelled(msg),
            Error::Internal(_) => Wire::Internal(msg),
        }
    }
}
