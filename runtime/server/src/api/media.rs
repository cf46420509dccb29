//! Media: upload, download (authenticated v1 and legacy v3), config. Files
//! live under `media_store_path`; the service stores uploads.

use super::extract::{url_param, Auth};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::{Actor, Upload};
use axon::ErrCode;
use axum::body::Body;
use axum::extract::{Request, State};
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
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let upload_name = request.uri().query().and_then(|q| url_param(q, "filename"));
    let max = hs.config.max_upload_size;
    let too_large = || MatrixError::new(413, ErrCode::TooLarge, "Upload request body is too large");
    if let Some(length) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > max {
            return Err(too_large());
        }
    }
    let bytes = axum::body::to_bytes(request.into_body(), max as usize)
        .await
        .map_err(|_| too_large())?;
    let upload = Upload {
        bytes,
        content_type,
        upload_name,
    };
    let media_id = hs.upload_media(&Actor::client(&requester), upload).await?;
    Ok(Json(
        json!({ "content_uri": format!("mxc://{}/{media_id}", hs.server_name()) }),
    ))
}

async fn serve(
    hs: &Homeserver,
    server: &str,
    media_id: &str,
    file_name: Option<String>,
) -> Result<Response, MatrixError> {
    let not_found = || MatrixError::new(404, ErrCode::NotFound, "Not found");
    if server != hs.server_name() || !valid_media_id(media_id) {
        return Err(not_found());
    }
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
    let mut response = ([(header::CONTENT_TYPE, content_type)], Body::from(bytes)).into_response();
    if let Some(name) = name {
        let safe: String = name
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        if let Ok(value) = format!("inline; filename=\"{safe}\"").parse() {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
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
