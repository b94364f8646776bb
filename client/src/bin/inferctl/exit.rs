//! inferctl's exit status by error class, so a script can tell "retry later" from "fix the
//! input" without parsing messages. The table (`STATUSES`) is in `--help` and the man page.

use std::process::ExitCode;

use inferd_client::Error;

/// Each exit status and what it means, for `--help` and the man page.
pub const STATUSES: [(u8, &str); 9] = [
    (0, "ok"),
    (1, "any other error (also: the daemon is not running)"),
    (2, "usage: unknown command or option, missing argument"),
    (
        3,
        "model not found, or not ready (loading, failed or unloaded)",
    ),
    (4, "invalid input"),
    (5, "overloaded or shutting down: retry later"),
    (6, "timeout"),
    (7, "access denied"),
    (8, "health: the daemon answers, degraded (a model failed)"),
];

/// How an error looks on stderr with `--json`.
pub const JSON_ERRORS: &str =
    "With --json, an error is also JSON on stderr: {\"error\": {\"name\", \"message\", \"exit\"}}";

/// The exit statuses as `--help` ends with them.
pub fn help() -> String {
    let rows: Vec<String> = STATUSES
        .iter()
        .map(|(code, what)| format!("  {code}  {what}"))
        .collect();
    format!("Exit status:\n{}\n{JSON_ERRORS}", rows.join("\n"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Other = 1,
    NotFound = 3,
    InvalidInput = 4,
    Retry = 5,
    Timeout = 6,
    AccessDenied = 7,
    /// `inferctl health` of a daemon whose status is degraded.
    Degraded = 8,
}

impl Exit {
    /// The class of an error, by its D-Bus name (inferd's, or the bus's own for a call it
    /// refused by policy).
    pub fn of(e: &Error) -> Exit {
        match e.short_name().as_str() {
            "ModelNotFound" | "ModelNotReady" => Exit::NotFound,
            "InvalidInput" | "InvalidArgs" => Exit::InvalidInput,
            "Overloaded" | "ShuttingDown" | "LimitsExceeded" => Exit::Retry,
            "Timeout" | "NoReply" | "TimedOut" => Exit::Timeout,
            "AccessDenied" | "AuthFailed" | "InteractiveAuthorizationRequired" => {
                Exit::AccessDenied
            }
            _ => Exit::Other,
        }
    }

    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// Reports `e` on stderr (as JSON too with `--json`) and gives its exit status.
pub fn fail(e: &Error, json: bool) -> ExitCode {
    let exit = Exit::of(e);
    if json {
        let v = serde_json::json!({"error": {
            "name": e.short_name(),
            "message": e.message(),
            "exit": exit as u8,
        }});
        eprintln!("{v}");
    } else {
        eprintln!("error: {}: {}", e.short_name(), e.message());
    }
    exit.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_status() {
        let cases = [
            (Error::ModelNotFound("x".into()), 3),
            (Error::ModelNotReady("x".into()), 3),
            (Error::InvalidInput("x".into()), 4),
            (Error::Overloaded("x".into()), 5),
            (Error::ShuttingDown("x".into()), 5),
            (Error::Timeout("x".into()), 6),
            (Error::AccessDenied("x".into()), 7),
            (Error::Internal("x".into()), 1),
            (Error::Cancelled("x".into()), 1),
        ];
        for (e, code) in cases {
            assert_eq!(Exit::of(&e) as u8, code, "{e:?}");
        }
    }
}
