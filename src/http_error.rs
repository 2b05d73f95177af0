//! Every way a request can be refused before a route runs, and the one place
//! that maps each to its status code. A refused request always gets a JSON
//! `{"error": "..."}` body that says what to fix.

use http::StatusCode;

/// A request refused by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No route on this path; the paths that have routes, for whoever set
    /// XucMgt's `THIRD_PARTY_URL`.
    #[error("no route on this path: THIRD_PARTY_URL's path must be one of {0}")]
    NotFound(String),
    /// Routes answer only POST (and OPTIONS for preflights).
    #[error("method not allowed: use POST")]
    MethodNotAllowed,
    /// The body is not declared as JSON.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// The body is over `server.max_body_bytes`.
    #[error("request body over {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not a valid payload; the text names the field.
    #[error("invalid payload: {0}")]
    BadRequest(String),
    /// The body could not be read: the client went away while sending it,
    /// or sent broken framing. Not a payload fault: it never came whole.
    #[error("request body could not be read: {0}")]
    BodyUnread(String),
    /// The body did not arrive before the deadline.
    #[error("request body not received in time")]
    Timeout,
    /// The browser origin is not in `cors.allow_origins`.
    #[error("origin not allowed")]
    OriginDenied,
}

impl From<&HttpError> for StatusCode {
    fn from(err: &HttpError) -> Self {
        match err {
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::BadRequest(_) | HttpError::BodyUnread(_) => StatusCode::BAD_REQUEST,
            HttpError::Timeout => StatusCode::REQUEST_TIMEOUT,
            HttpError::OriginDenied => StatusCode::FORBIDDEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status() {
        let cases = [
            (HttpError::NotFound(String::new()), 404),
            (HttpError::MethodNotAllowed, 405),
            (HttpError::UnsupportedMediaType, 415),
            (HttpError::PayloadTooLarge(1), 413),
            (HttpError::BadRequest(String::new()), 400),
            (HttpError::BodyUnread(String::new()), 400),
            (HttpError::Timeout, 408),
            (HttpError::OriginDenied, 403),
        ];
        for (err, status) in cases {
            assert_eq!(StatusCode::from(&err).as_u16(), status, "{err:?}");
        }
    }
}
