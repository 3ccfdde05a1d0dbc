//! The JSON a stream's endpoint answers, and every error answer, as the
//! server writes it and clients read it (`pipe send`, `pipe::Client`, the
//! management CLI): one definition for both sides, so they cannot drift.
//!
//! | status | body |
//! |---|---|
//! | 200 | [`Accepted`]: `{"accepted", "dropped_fields"?, "quarantined"?, "errors"?}` |
//! | 400, events refused | [`Refused`]: `{"errors": [{"index", "field", "type", "message"}]}` |
//! | any other error | [`ErrorAnswer`]: `{"error": {"kind", "message"}}` |

use pipe_schemas::{ErrorKind, EventError};
use serde::{Deserialize, Serialize};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `200`: the events are on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    /// Events accepted (in quarantine mode, the good ones).
    pub accepted: u64,
    /// Fields dropped (`unknown_fields = "drop"`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_fields: u64,
    /// Events put in the quarantine table (quarantine mode).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quarantined: u64,
    /// Why each quarantined event was (not repeated in a replayed answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<EventError>,
}

/// `400`: events the schema refuses; nothing of the request was kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    pub errors: Vec<EventError>,
}

/// Every other error: its kind ([`ErrorKind::name`]) and message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub kind: String,
    pub message: String,
}

impl ErrorAnswer {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorAnswer {
        ErrorAnswer {
            error: ErrorDetail {
                kind: kind.name().to_string(),
                message: message.into(),
            },
        }
    }

    /// The kind and message of an error answer with HTTP status `status`:
    /// as `pipe` sends it, else (a proxy's answer, another server's) the
    /// kind the status says and the body as text.
    pub fn read(status: u16, body: &str) -> (ErrorKind, String) {
        match serde_json::from_str::<ErrorAnswer>(body) {
            Ok(ErrorAnswer { error }) => (
                ErrorKind::from_name(&error.kind)
                    .unwrap_or_else(|| ErrorKind::from_http_status(status)),
                error.message,
            ),
            Err(_) => (
                ErrorKind::from_http_status(status),
                match body.trim() {
                    "" => format!("HTTP {status}"),
                    text => format!("HTTP {status}: {text}"),
                },
            ),
        }
    }
}

/// A stream endpoint's answer, as a client reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestAnswer {
    Accepted(Accepted),
    Refused(Refused),
    Error(ErrorKind, String),
}

impl IngestAnswer {
    /// Reads an answer with HTTP status `status` and body `body`. A 200 is
    /// an acceptance whatever its body holds (the events were kept: the
    /// counts it names, or none if it names none).
    pub fn read(status: u16, body: &str) -> IngestAnswer {
        if status == 200 {
            return IngestAnswer::Accepted(serde_json::from_str(body).unwrap_or_else(|_| {
                let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                Accepted {
                    accepted: v["accepted"].as_u64().unwrap_or(0),
                    dropped_fields: v["dropped_fields"].as_u64().unwrap_or(0),
                    quarantined: v["quarantined"].as_u64().unwrap_or(0),
                    errors: Vec::new(),
                }
            }));
        }
        let typed = match status {
            400 => serde_json::from_str(body).map(IngestAnswer::Refused).ok(),
            _ => None,
        };
        typed.unwrap_or_else(|| {
            let (kind, message) = ErrorAnswer::read(status, body);
            IngestAnswer::Error(kind, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipe_schemas::EventErrorKind;

    #[test]
    fn what_the_server_writes_the_client_reads() {
        let accepted = Accepted {
            accepted: 3,
            quarantined: 1,
            errors: vec![EventError {
                index: 2,
                field: "amount".into(),
                kind: EventErrorKind::TypeMismatch,
                message: "expected a number".into(),
            }],
            ..Accepted::default()
        };
        let text = serde_json::to_string(&accepted).unwrap();
        assert!(!text.contains("dropped_fields"), "{text}");
        assert_eq!(
            IngestAnswer::read(200, &text),
            IngestAnswer::Accepted(accepted.clone())
        );
        let refused = Refused {
            errors: accepted.errors.clone(),
        };
        let text = serde_json::to_string(&refused).unwrap();
        assert!(text.contains(r#""type":"type_mismatch""#), "{text}");
        assert_eq!(
            IngestAnswer::read(400, &text),
            IngestAnswer::Refused(refused)
        );
        let error = serde_json::to_string(&ErrorAnswer::new(ErrorKind::TooLarge, "big")).unwrap();
        assert_eq!(
            IngestAnswer::read(413, &error),
            IngestAnswer::Error(ErrorKind::TooLarge, "big".into())
        );
        assert_eq!(
            IngestAnswer::read(400, &error),
            IngestAnswer::Error(ErrorKind::TooLarge, "big".into()),
            "a 400 without events is an error answer"
        );
        // A newer server's error type, a missing `field`, a body that is
        // not JSON: a 200 is still an acceptance, a 400 still per event.
        let newer = r#"{"accepted": 2, "quarantined": 1, "errors": [{"index": 0, "type": "brand_new", "message": "m"}]}"#;
        let IngestAnswer::Accepted(a) = IngestAnswer::read(200, newer) else {
            panic!("a 200 is an acceptance");
        };
        assert_eq!((a.accepted, a.errors[0].kind), (2, EventErrorKind::Unknown));
        assert_eq!(
            IngestAnswer::read(200, "OK"),
            IngestAnswer::Accepted(Accepted::default())
        );
        let refused = r#"{"errors": [{"index": 3, "type": "brand_new", "message": "m"}]}"#;
        assert!(
            matches!(IngestAnswer::read(400, refused), IngestAnswer::Refused(r) if r.errors[0].index == 3)
        );
        assert_eq!(
            IngestAnswer::read(502, "Bad Gateway"),
            IngestAnswer::Error(ErrorKind::Unavailable, "HTTP 502: Bad Gateway".into())
        );
    }
}
