//! Media: upload, download (authenticated v1 and legacy v3), config. Files
//! live under `media_store_path`; a file is synced to disk before its row is
//! committed, so an acknowledged upload survives a crash.

use super::extract::{url_param, Auth};
use super::{now_ms, random_string, ApiResult, AppState, MatrixError};
use crate::storage::MediaRow;
use axon::callbacks::SpamCheck;
use axon::ErrCode;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

pub fn routes(_state: &Arc<AppState>) -> Router<Arc<AppState>> {
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

async fn config(State(state): State<Arc<AppState>>, Auth(requester): Auth) -> ApiResult {
    if let Ok(user) = ruma::UserId::parse(&requester.user_id) {
        if let Some(config) = state
            .callbacks
            .media_repository
            .get_media_config_for_user(&user)
            .await?
        {
            return Ok(Json(serde_json::Value::Object(config)));
        }
    }
    Ok(Json(
        json!({ "m.upload.size": state.config.max_upload_size }),
    ))
}

/// The modules' checks of an upload, in Synapse's order: its size, the
/// user's upload limits, then the content. Nothing is stored if one refuses.
async fn check_upload(
    state: &AppState,
    user: &ruma::UserId,
    bytes: &[u8],
    info: &axon::callbacks::FileInfo,
) -> Result<(), MatrixError> {
    let media = &state.callbacks.media_repository;
    let size = bytes.len() as u64;
    if !media
        .is_user_allowed_to_upload_media_of_size(user, size)
        .await?
    {
        return Err(MatrixError::new(
            413,
            ErrCode::TooLarge,
            "Upload request body is too large",
        ));
    }
    let mut limits = match media.get_media_upload_limits_for_user(user).await? {
        Some(limits) => limits,
        None => state
            .config
            .media_upload_limits
            .iter()
            .map(|l| axon::callbacks::MediaUploadLimit {
                time_period_ms: l.time_period.as_millis(),
                max_bytes: l.max_size,
            })
            .collect(),
    };
    limits.sort_by_key(|l| std::cmp::Reverse(l.time_period_ms));
    for limit in &limits {
        let since = now_ms() - limit.time_period_ms as i64;
        let sent = state
            .storage
            .uploaded_bytes_since(user.as_str(), since)
            .await?;
        if sent + size > limit.max_bytes {
            media
                .on_media_upload_limit_exceeded(user, limit, sent, size)
                .await?;
            return Err(MatrixError::new(
                400,
                ErrCode::ResourceLimitExceeded,
                "Media upload limit exceeded",
            ));
        }
    }
    if let SpamCheck::Deny { .. } = state
        .callbacks
        .spam_checker
        .check_media_file_for_spam(bytes, info)
        .await?
    {
        return Err(MatrixError::new(400, ErrCode::Unknown, "Bad content"));
    }
    Ok(())
}

fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Auth(requester): Auth,
    request: Request,
) -> ApiResult {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let upload_name = request.uri().query().and_then(|q| url_param(q, "filename"));
    let max = state.config.max_upload_size;
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
    let media_id = random_string(24);
    if let Ok(user) = ruma::UserId::parse(&requester.user_id) {
        let info = axon::callbacks::FileInfo {
            media_id: media_id.clone(),
            uploader: user.clone(),
            upload_name: upload_name.clone(),
            content_type: content_type.clone(),
            size: bytes.len() as u64,
        };
        check_upload(&state, &user, &bytes, &info).await?;
    }
    let path = state.config.media_store_path.join(&media_id);
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| MatrixError::internal(format!("cannot store media: {e}")))?;
    let written = async {
        file.write_all(&bytes).await?;
        file.sync_all().await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(MatrixError::internal(format!("cannot store media: {e}")));
    }
    let row = MediaRow {
        media_id: media_id.clone(),
        uploader: requester.user_id.clone(),
        content_type,
        upload_name,
        size: bytes.len() as i64,
        created_ts: now_ms(),
    };
    if let Err(e) = state.storage.insert_media(row).await {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e.into());
    }
    Ok(Json(
        json!({ "content_uri": format!("mxc://{}/{media_id}", state.server_name()) }),
    ))
}

async fn serve(
    state: &AppState,
    server: &str,
    media_id: &str,
    file_name: Option<String>,
) -> Result<Response, MatrixError> {
    let not_found = || MatrixError::new(404, ErrCode::NotFound, "Not found");
    if server != state.server_name() || !valid_media_id(media_id) {
        return Err(not_found());
    }
    let row = state
        .storage
        .get_media(media_id)
        .await?
        .ok_or_else(not_found)?;
    let bytes = tokio::fs::read(state.config.media_store_path.join(media_id))
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
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    super::extract::ApiPath((server, media_id)): super::extract::ApiPath<(String, String)>,
) -> Result<Response, MatrixError> {
    serve(&state, &server, &media_id, None).await
}

async fn download_authenticated_named(
    State(state): State<Arc<AppState>>,
    _auth: Auth,
    super::extract::ApiPath((server, media_id, file_name)): super::extract::ApiPath<(
        String,
        String,
        String,
    )>,
) -> Result<Response, MatrixError> {
    serve(&state, &server, &media_id, Some(file_name)).await
}

async fn download_legacy(
    State(state): State<Arc<AppState>>,
    super::extract::ApiPath((server, media_id)): super::extract::ApiPath<(String, String)>,
) -> Result<Response, MatrixError> {
    serve(&state, &server, &media_id, None).await
}

async fn download_legacy_named(
    State(state): State<Arc<AppState>>,
    super::extract::ApiPath((server, media_id, file_name)): super::extract::ApiPath<(
        String,
        String,
        String,
    )>,
) -> Result<Response, MatrixError> {
    serve(&state, &server, &media_id, Some(file_name)).await
}
