//! The one place engine errors become HTTP answers: a status code, OpenAI's error object
//! (`{"error": {"message", "type", "param", "code"}}`) and, where retrying helps, `Retry-After`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `not_found_error`, `rate_limit_error`, ...
    pub kind: &'static str,
    /// inferd's error kind (`Error::kind`), the same name as on D-Bus and MQTT.
    pub code: &'static str,
    pub message: String,
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::from(Error::InvalidInput(message.into()))
    }

    /// The error of one request, its message ending with the request id (as in the logs).
    pub fn for_request(e: Error, request_id: &str) -> ApiError {
        let mut a = ApiError::from(e);
        a.message = format!("{} (request {request_id})", a.message);
        a
    }
}

impl ApiError {
    pub fn not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            code: "not_found",
            message: "no such endpoint; inferd serves /v1/chat/completions, /v1/completions, \
                      /v1/embeddings, /v1/models and /health"
                .into(),
            retry_after_s: None,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            code: "access_denied",
            message: "this endpoint needs Authorization: Bearer <the token in http.token_file>"
                .into(),
            retry_after_s: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let (status, kind, retry_after_s) = match &e {
            Error::ModelNotFound(_) => (StatusCode::NOT_FOUND, "not_found_error", None),
            Error::ModelNotReady { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                Some(5),
            ),
            Error::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            Error::Overloaded { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some(1))
            }
            Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout_error", None),
            Error::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                Some(5),
            ),
            // The caller is gone; nobody reads this.
            Error::Cancelled => (StatusCode::BAD_REQUEST, "cancelled", None),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        ApiError {
            status,
            kind,
            code: e.kind(),
            message: e.to_string(),
            retry_after_s,
        }
    }
}

impl ApiError {
    /// OpenAI's error object, also sent as the last event of a stream that fails.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": null,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// A JSON body whose refusal is an OpenAI error object: a 400 that says what is wrong with
/// it, or a 413 past `http.max_body_bytes`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Body(v))
            .map_err(|e: JsonRejection| ApiError {
                // OpenAI answers 400 to a body that is not the request, where axum says 422;
                // a body too large keeps its 413.
                status: match &e {
                    JsonRejection::BytesRejection(b) => b.status(),
                    _ => StatusCode::BAD_REQUEST,
                },
                kind: "invalid_request_error",
                code: "invalid_input",
                message: format!("request body: {}", e.body_text()),
                retry_after_s: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_status_codes() {
        let cases = [
            (Error::ModelNotFound("x".into()), 404, None),
            (Error::InvalidInput("bad".into()), 400, None),
            (
                Error::Overloaded {
                    model: "m".into(),
                    capacity: 1,
                },
                429,
                Some("1"),
            ),
            (
                Error::Timeout {
                    model: "m".into(),
                    waited_ms: 5,
                },
                504,
                None,
            ),
            (Error::ShuttingDown, 503, Some("5")),
            (Error::Internal("x".into()), 500, None),
        ];
        for (e, status, retry) in cases {
            let r = ApiError::for_request(e, "h1-1").into_response();
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(
                r.headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                retry
            );
        }
    }
}
