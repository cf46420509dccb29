//! Request extractors that answer bad input with Matrix errors: the JSON
//! body (`M_NOT_JSON`, `M_BAD_JSON`, `M_TOO_LARGE`), query and path
//! parameters (`M_INVALID_PARAM`), and the access token (`M_MISSING_TOKEN`,
//! `M_UNKNOWN_TOKEN`).

use super::MatrixError;
use crate::homeserver::Homeserver;
use crate::service::Requester;
use axon::ErrCode;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Largest JSON body the client API reads.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// A JSON object body; an empty body is `{}` (as Synapse accepts for
/// endpoints whose fields are all optional).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, MatrixError> {
        let idle = body_timeout(req.extensions());
        let bytes = read_body(req.into_body(), MAX_JSON_BODY, idle).await?;
        let value: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|_| MatrixError::new(400, ErrCode::NotJson, "Content not JSON."))?
        };
        if !value.is_object() {
            return Err(MatrixError::new(
                400,
                ErrCode::BadJson,
                "Content must be a JSON object.",
            ));
        }
        parse_json(value).map(JsonBody)
    }
}

/// The longest gap between two chunks of a body on this connection.
pub(crate) fn body_timeout(extensions: &axum::http::Extensions) -> std::time::Duration {
    extensions
        .get::<crate::http::BodyTimeout>()
        .map(|t| t.0)
        .unwrap_or(std::time::Duration::from_secs(30))
}

/// A request body of at most `limit` bytes, each chunk arriving within
/// `idle` of the one before: 413 past the limit, 408 if the client stalls.
pub(crate) async fn read_body(
    body: axum::body::Body,
    limit: usize,
    idle: std::time::Duration,
) -> Result<Vec<u8>, MatrixError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut bytes = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(stalled()),
            Ok(None) => return Ok(bytes),
            Ok(Some(frame)) => frame.map_err(|e| {
                MatrixError::new(400, ErrCode::Unknown, format!("the body broke off: {e}"))
            })?,
        };
        if let Ok(chunk) = frame.into_data() {
            if bytes.len() + chunk.len() > limit {
                return Err(MatrixError::new(
                    413,
                    ErrCode::TooLarge,
                    "Request body too large",
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
    }
}

/// A client that stopped sending its body.
pub(crate) fn stalled() -> MatrixError {
    MatrixError::new(
        408,
        ErrCode::Unknown,
        "The request body stopped arriving; send it without long pauses",
    )
}

/// A JSON value into `T`, or `M_BAD_JSON` naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, MatrixError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        MatrixError::new(400, ErrCode::BadJson, message)
    })
}

/// Query parameters; bad ones are `M_INVALID_PARAM`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, MatrixError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| MatrixError::new(400, ErrCode::InvalidParam, e.body_text()))
    }
}

/// Path parameters; bad ones are `M_INVALID_PARAM`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, MatrixError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| MatrixError::new(400, ErrCode::InvalidParam, e.body_text()))
    }
}

/// An authenticated request (Synapse's `get_user_by_req`): the token from
/// `Authorization: Bearer …` or `?access_token=`.
pub struct Auth(pub Requester);

/// An authenticated request that an expired account may still make (logout).
pub struct AuthAllowExpired(pub Requester);

fn access_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    let query = parts.uri.query()?;
    url_param(query, "access_token")
}

/// One parameter of a query string, percent-decoded.
pub fn url_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Every value of a repeated query parameter (`ver=10&ver=11`), decoded.
pub fn url_params(query: Option<&str>, name: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// The user a request's access token belongs to.
pub(crate) async fn authenticate(
    hs: &Homeserver,
    parts: &Parts,
    allow_expired: bool,
) -> Result<Requester, MatrixError> {
    hs.authenticate(access_token(parts), allow_expired).await
}

impl FromRequestParts<Arc<Homeserver>> for Auth {
    type Rejection = MatrixError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Homeserver>,
    ) -> Result<Self, MatrixError> {
        let requester = authenticate(state, parts, false).await?;
        if requester.is_guest {
            let pattern = parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|p| p.as_str())
                .unwrap_or_default();
            if !crate::service::guests::guest_may_use(parts.method.as_str(), pattern) {
                return Err(crate::service::guests::guest_forbidden());
            }
        }
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        state.saw_client(&requester, client_addr(parts), user_agent);
        Ok(Auth(requester))
    }
}

impl FromRequestParts<Arc<Homeserver>> for AuthAllowExpired {
    type Rejection = MatrixError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Homeserver>,
    ) -> Result<Self, MatrixError> {
        authenticate(state, parts, true).await.map(AuthAllowExpired)
    }
}

/// Marks a listener with `x_forwarded: true`: it sits behind a reverse
/// proxy, whose `X-Forwarded-For` names the client.
#[derive(Clone, Copy)]
pub struct TrustForwardedFor;

/// The client's address, for rate limits per address and modules'
/// `request_info`: the peer's, or behind a trusted proxy the first address
/// of `X-Forwarded-For` (as Synapse reads it).
pub struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(parts)))
    }
}

fn client_addr(parts: &Parts) -> std::net::IpAddr {
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let forwarded = parts
        .extensions
        .get::<TrustForwardedFor>()
        .and_then(|_| parts.headers.get("x-forwarded-for"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|first| first.trim().parse().ok());
    forwarded.unwrap_or(peer)
}
