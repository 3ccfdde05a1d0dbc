//! The Iceberg REST error model: `{"error": {"message", "type", "code"}}`
//! with the exception names clients map to their own errors (a
//! `CommitFailedException` is retried by the client, a
//! `NoSuchTableException` is "table not found", …).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An answer that is not a success.
#[derive(Debug)]
pub struct RestError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

pub type RestResult<T> = std::result::Result<T, RestError>;

impl RestError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> RestError {
        RestError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::UNAUTHORIZED, "NotAuthorizedException", message)
    }

    pub fn forbidden(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::FORBIDDEN, "ForbiddenException", message)
    }

    pub fn no_namespace(namespace: &str) -> RestError {
        RestError::new(
            StatusCode::NOT_FOUND,
            "NoSuchNamespaceException",
            format!("namespace `{namespace}` does not exist"),
        )
    }

    pub fn no_table(table: &str) -> RestError {
        RestError::new(
            StatusCode::NOT_FOUND,
            "NoSuchTableException",
            format!("table `{table}` does not exist"),
        )
    }

    pub fn commit_failed(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::CONFLICT, "CommitFailedException", message)
    }

    /// An iceberg error of a catalog call, by its kind.
    pub fn of_iceberg(e: &iceberg::Error) -> RestError {
        use iceberg::ErrorKind as K;
        let message = e.to_string();
        match e.kind() {
            K::NamespaceNotFound => {
                RestError::new(StatusCode::NOT_FOUND, "NoSuchNamespaceException", message)
            }
            K::TableNotFound => {
                RestError::new(StatusCode::NOT_FOUND, "NoSuchTableException", message)
            }
            K::NamespaceAlreadyExists | K::TableAlreadyExists => {
                RestError::new(StatusCode::CONFLICT, "AlreadyExistsException", message)
            }
            K::CatalogCommitConflicts => RestError::commit_failed(message),
            K::FeatureUnsupported => RestError::new(
                StatusCode::NOT_ACCEPTABLE,
                "UnsupportedOperationException",
                message,
            ),
            K::DataInvalid | K::PreconditionFailed => RestError::bad_request(message),
            _ => RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                message,
            ),
        }
    }

    /// An error of `pipe`'s own, by its kind.
    pub fn of_pipe(e: &crate::Error) -> RestError {
        use crate::ErrorKind as K;
        let message = e.to_string();
        match e.kind() {
            K::InvalidInput | K::TooLarge => RestError::bad_request(message),
            K::NotFound => RestError::new(StatusCode::NOT_FOUND, "NotFoundException", message),
            K::Conflict => RestError::commit_failed(message),
            K::Unauthorized => RestError::unauthorized(message),
            K::Unavailable | K::TimedOut => RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                message,
            ),
            K::Internal => RestError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                message,
            ),
        }
    }
}

impl From<iceberg::Error> for RestError {
    fn from(e: iceberg::Error) -> RestError {
        RestError::of_iceberg(&e)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        (self.status, Json(body)).into_response()
    }
}
