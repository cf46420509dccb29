//! Media: upload, download and thumbnails (authenticated v1 and legacy v3), config. Files
//! live under `media_store_path`; the service stores uploads.

use super::extract::{url_param, Auth};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::{Actor, Upload};
use axon::ErrCode;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub fn routes(_hs: &Arc<Homeserver>) -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/_matrix/media/v3/upload", post(upload))
        .route("/_matrix/media/r0/upload", post(upload))
        .route("/_matrix/client/v1/media/config", get(config))
        .route("/_matrix/media/v3/config", get(config))
        .route(
            "/_matrix/client/v1/media/download/{server}/{media_id}",
            get(download_authenticated),
        )
        .route(
            "/_matrix/client/v1/media/download/{server}/{media_id}/{file_name}",
            get(download_authenticated_named),
        )
        .route(
            "/_matrix/client/v1/media/thumbnail/{server}/{media_id}",
            get(thumbnail_authenticated),
        )
        .route(
            "/_matrix/media/v3/thumbnail/{server}/{media_id}",
            get(thumbnail_legacy),
        )
        .route(
            "/_matrix/media/r0/thumbnail/{server}/{media_id}",
            get(thumbnail_legacy),
        )
        .route(
            "/_matrix/media/v3/download/{server}/{media_id}",
            get(download_legacy),
        )
        .route(
            "/_matrix/media/v3/download/{server}/{media_id}/{file_name}",
            get(download_legacy_named),
        )
}

async fn config(State(hs): State<Arc<Homeserver>>, Auth(requester): Auth) -> ApiResult {
    Ok(Json(hs.media_config(&requester.user_id).await?))
}

fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

async fn upload(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    request: Request,
) -> ApiResult {
    let (content_type, declared_length) = {
        let header_text = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let length = header_text(header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
        (header_text(header::CONTENT_TYPE), length)
    };
    let upload_name = request.uri().query().and_then(|q| url_param(q, "filename"));
    let upload = Upload {
        body: request.into_body(),
        declared_length,
        content_type,
        upload_name,
    };
    let media_id = hs.upload_media(&Actor::client(&requester), upload).await?;
    Ok(Json(
        json!({ "content_uri": format!("mxc://{}/{media_id}", hs.server_name()) }),
    ))
}

/// Text types served with `charset=UTF-8` when the upload named none.
const TEXT_CONTENT_TYPES: &[&str] = &[
    "text/css",
    "text/csv",
    "text/html",
    "text/calendar",
    "text/plain",
    "text/javascript",
    "application/json",
    "application/ld+json",
    "application/rtf",
    "image/svg+xml",
    "text/xml",
];

/// Types a browser may show inline (Synapse's list; SVG and HTML are not
/// among them): anything else is served as an attachment.
const INLINE_CONTENT_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// What a media response says about itself, as Synapse's `add_file_headers`
/// and download resource say it: uploads are other users' content, so a
/// browser must never run them on the homeserver's origin.
fn media_headers(content_type: &str, name: Option<&str>) -> Vec<(header::HeaderName, String)> {
    let essence = crate::service::content_type_essence(content_type);
    let content_type =
        if TEXT_CONTENT_TYPES.contains(&essence.as_str()) && !content_type.contains(';') {
            format!("{content_type}; charset=UTF-8")
        } else {
            content_type.to_string()
        };
    let mut disposition = if INLINE_CONTENT_TYPES.contains(&essence.as_str()) {
        "inline".to_string()
    } else {
        "attachment".to_string()
    };
    if let Some(name) = name {
        const SEPARATORS: &str = "()<>@,;:\\\"/[]?={} \t";
        let token = name
            .chars()
            .all(|c| (c as u32) > 32 && (c as u32) < 127 && !SEPARATORS.contains(c));
        if token {
            disposition = format!("{disposition}; filename={name}");
        } else {
            let quoted: String = form_urlencoded::byte_serialize(name.as_bytes())
                .collect::<String>()
                .replace('+', "%20");
            disposition = format!("{disposition}; filename*=utf-8''{quoted}");
        }
    }
    vec![
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_DISPOSITION, disposition),
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';".into(),
        ),
        (
            header::HeaderName::from_static("x-content-security-policy"),
            "sandbox;".into(),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        (header::REFERRER_POLICY, "no-referrer".into()),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "cross-origin".into(),
        ),
        (
            header::HeaderName::from_static("x-robots-tag"),
            "noindex, nofollow, noarchive, noimageindex".into(),
        ),
        (
            header::CACHE_CONTROL,
            "public,max-age=86400,s-maxage=0,proxy-revalidate".into(),
        ),
    ]
}

fn not_found() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "Not found")
}

/// Media of this server is all Axon serves (it fetches no remote media yet).
fn check_local_media(hs: &Homeserver, server: &str, media_id: &str) -> Result<(), MatrixError> {
    if server != hs.server_name() || !valid_media_id(media_id) {
        return Err(not_found());
    }
    Ok(())
}

/// A media body with `media_headers`; a value that is not a valid header
/// (a control character in an uploaded content type) is left out rather
/// than served.
fn media_response(bytes: Vec<u8>, content_type: &str, name: Option<&str>) -> Response {
    let mut response = Body::from(bytes).into_response();
    for (name, value) in media_headers(content_type, name) {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn serve(
    hs: &Homeserver,
    server: &str,
    media_id: &str,
    file_name: Option<String>,
) -> Result<Response, MatrixError> {
    check_local_media(hs, server, media_id)?;
    let row = hs
        .storage
        .get_media(media_id)
        .await?
        .ok_or_else(not_found)?;
    let bytes = tokio::fs::read(hs.config.media_store_path.join(media_id))
        .await
        .map_err(|_| not_found())?;
    let content_type = row
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = file_name.or(row.upload_name);
    Ok(media_response(bytes, &content_type, name.as_deref()))
}

async fn download_authenticated(
    State(hs): State<Arc<Homeserver>>,
    _auth: Auth,
    super::extract::ApiPath((server, media_id)): super::extract::ApiPath<(String, String)>,
) -> Result<Response, MatrixError> {
    serve(&hs, &server, &media_id, None).await
}

async fn download_authenticated_named(
    State(hs): State<Arc<Homeserver>>,
    _auth: Auth,
    super::extract::ApiPath((server, media_id, file_name)): super::extract::ApiPath<(
        String,
        String,
        String,
    )>,
) -> Result<Response, MatrixError> {
    serve(&hs, &server, &media_id, Some(file_name)).await
}

async fn download_legacy(
    State(hs): State<Arc<Homeserver>>,
    super::extract::ApiPath((server, media_id)): super::extract::ApiPath<(String, String)>,
) -> Result<Response, MatrixError> {
    serve(&hs, &server, &media_id, None).await
}

async fn download_legacy_named(
    State(hs): State<Arc<Homeserver>>,
    super::extract::ApiPath((server, media_id, file_name)): super::extract::ApiPath<(
        String,
        String,
        String,
    )>,
) -> Result<Response, MatrixError> {
    serve(&hs, &server, &media_id, Some(file_name)).await
}

/// A required positive integer of the query string, with Synapse's errors.
fn dimension(query: &str, name: &str) -> Result<u32, MatrixError> {
    let value = url_param(query, name).ok_or_else(|| {
        MatrixError::new(
            400,
            ErrCode::MissingParam,
            format!("Missing integer query parameter '{name}'"),
        )
    })?;
    value.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("Query parameter '{name}' must be a positive integer"),
        )
    })
}

async fn thumbnail(
    hs: &Homeserver,
    server: &str,
    media_id: &str,
    query: Option<String>,
) -> Result<Response, MatrixError> {
    use crate::config::ThumbnailMethod;
    let query = query.unwrap_or_default();
    let width = dimension(&query, "width")?;
    let height = dimension(&query, "height")?;
    let method = match url_param(&query, "method").as_deref() {
        None | Some("scale") => ThumbnailMethod::Scale,
        Some("crop") => ThumbnailMethod::Crop,
        Some(other) => {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("Query parameter 'method' must be 'crop' or 'scale', not '{other}'"),
            ))
        }
    };
    check_local_media(hs, server, media_id)?;
    let thumbnail = hs
        .thumbnail(media_id, width, height, method)
        .await?
        .ok_or_else(not_found)?;
    Ok(media_response(
        thumbnail.bytes,
        thumbnail.content_type,
        None,
    ))
}

async fn thumbnail_authenticated(
    State(hs): State<Arc<Homeserver>>,
    _auth: Auth,
    super::extract::ApiPath((server, media_id)): super::extract::ApiPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, MatrixError> {
    thumbnail(&hs, &server, &media_id, query).await
}

async fn thumbnail_legacy(
    State(hs): State<Arc<Homeserver>>,
    super::extract::ApiPath((server, media_id)): super::extract::ApiPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, MatrixError> {
    thumbnail(&hs, &server, &media_id, query).await
}
