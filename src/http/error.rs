//! JSON errors for the HTTP API: `{"error": code, "message": text, ...}` with a fitting status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String, details: serde_json::Value },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// 503 with details (e.g. the ids ingested events got).
    #[error("{message}")]
    UnavailableWith { message: String, details: serde_json::Value },
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MisdirectedRequest(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into(), details: json!({}) }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::UnavailableWith { .. } | ApiError::Full(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "message": self.to_string() });
        let code = match self {
            ApiError::BadRequest { code, details, .. } => {
                if let (Some(body), Some(details)) = (body.as_object_mut(), details.as_object()) {
                    body.extend(details.clone());
                }
                *code
            }
            ApiError::UnavailableWith { details, .. } => {
                if let (Some(body), Some(details)) = (body.as_object_mut(), details.as_object()) {
                    body.extend(details.clone());
                }
                "unavailable"
            }
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Full(_) => "server_full",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MisdirectedRequest(_) => "unknown_host",
        };
        body["error"] = json!(code);
        HttpResponse::build(self.status_code()).json(body)
    }
}

/// Query strings that do not parse get the same JSON error shape.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::bad_request("bad_query", err.to_string()).into()
}
