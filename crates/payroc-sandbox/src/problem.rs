//! RFC 7807 `application/problem+json` responses shaped like Payroc's.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};

/// Payroc's problem-type URIs all live under this prefix.
pub(crate) const TYPE_PREFIX: &str = "https://docs.payroc.com/api/errors#";

/// One entry of a 400's `errors[]`: `parameter` is a JSON path such as
/// `order.amount`, as the live API reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct FieldError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(parameter: &str, detail: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            parameter: Some(parameter.to_owned()),
            detail: Some(detail.into()),
            message: message.into(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    /// The part of `type` after [`TYPE_PREFIX`], e.g. `bad-request`.
    #[serde(rename = "type", serialize_with = "type_uri")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// On 403: the URL the action was attempted on. Boxed, like `kind`
    /// being a `&'static str`, to keep `Problem` (the `Err` of validation)
    /// small.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            resource: None,
            errors: Vec::new(),
        }
    }

    pub(crate) fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub(crate) fn bad_request(errors: Vec<FieldError>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            "One or more validation errors occurred, see error section for more info",
        )
        .with_errors(errors)
    }

    pub(crate) fn not_authorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "not-authorized",
            "Not Authorized",
            "Your identity could not be verified",
        )
    }

    pub(crate) fn not_found(resource: &'static str) -> Self {
        let mut p = Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", "Resource not found");
        p.resource = Some(resource);
        p
    }

    /// Payroc's 403: `instance` is the URL the action was attempted on,
    /// `resource` the kind of thing it would have made.
    pub(crate) fn forbidden(instance: String, resource: &'static str) -> Self {
        let mut p = Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "The processing terminal is not allowed to run this operation",
        );
        p.instance = Some(instance.into_boxed_str());
        p.resource = Some(resource);
        p
    }

    /// `/authorize` with an API key that is known but may not be used.
    pub(crate) fn api_key_not_allowed() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", "API key not allowed")
    }

    pub(crate) fn idempotency_key_in_use() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency-key-in-use",
            "Idempotency-Key in use",
            "'Idempotency-Key' is already in use against a different request",
        )
    }

    pub(crate) fn api_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api-error",
            "Api error",
            "We are unable to process your request at this time",
        )
        .with_errors(vec![FieldError {
            parameter: None,
            detail: None,
            message: "Service offline".to_owned(),
        }])
    }

    pub(crate) fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("problem serializes")
    }
}

/// Serializes a problem kind as its full `type` URI.
fn type_uri<S: Serializer>(kind: &&'static str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{TYPE_PREFIX}{kind}"))
}

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut res = (self.status_code(), self.to_bytes()).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}
