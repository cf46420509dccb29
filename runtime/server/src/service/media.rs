//! The media repository: uploads and the per-user media config.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::MediaRow;
use axon::callbacks::{FileInfo, MediaUploadLimit, SpamCheck};
use axon::ErrCode;
use ruma::UserId;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// An upload as the client sends it: its body arrives as a stream.
pub struct Upload {
    pub body: axum::body::Body,
    /// The `Content-Length` the client declared, if any.
    pub declared_length: Option<u64>,
    pub content_type: Option<String>,
    pub upload_name: Option<String>,
}

/// A content type without its parameters, lower-cased: `image/png` of
/// `Image/PNG; charset=x`.
pub(crate) fn content_type_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn too_large() -> MatrixError {
    MatrixError::new(413, ErrCode::TooLarge, "Upload request body is too large")
}

/// An upload being received into `media_store_path`; removed on drop
/// unless kept.
struct Incoming {
    path: std::path::PathBuf,
    size: u64,
    kept: bool,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Homeserver {
    /// `GET /media/config`: a module's config for the user
    /// (`get_media_config_for_user`), else the server's.
    pub async fn media_config(&self, user: &UserId) -> Result<Value, MatrixError> {
        Ok(
            match self
                .callbacks
                .media_repository
                .get_media_config_for_user(user)
                .await?
            {
                Some(config) => Value::Object(config),
                None => json!({ "m.upload.size": self.config.max_upload_size }),
            },
        )
    }

    /// Stores an upload; returns its media ID. Clients are rate-limited
    /// (`rc_media_create`); the body is streamed to disk within
    /// `max_upload_size`. The modules check it then, in Synapse's order: its
    /// size (`is_user_allowed_to_upload_media_of_size`), the user's upload
    /// limits (`get_media_upload_limits_for_user`,
    /// `on_media_upload_limit_exceeded`), then the content
    /// (`check_media_file_for_spam`). Nothing is kept if one refuses; the
    /// file is synced to disk before its row is committed, so an
    /// acknowledged upload survives a crash.
    pub async fn upload_media(&self, actor: &Actor, upload: Upload) -> Result<String, MatrixError> {
        let user = &actor.user_id;
        if actor.is_ratelimited() {
            self.ratelimit_user("rc_media_create", user, self.config.rc_media_create)
                .await?;
        }
        if upload
            .declared_length
            .is_some_and(|length| length > self.config.max_upload_size)
        {
            return Err(too_large());
        }
        let media_id = super::random_string(24);
        let incoming = self.receive(&media_id, upload.body).await?;
        let info = FileInfo {
            media_id: media_id.clone(),
            uploader: user.clone(),
            upload_name: upload.upload_name.clone(),
            content_type: upload.content_type.clone(),
            size: incoming.size,
        };
        self.check_upload(user, &incoming, &info).await?;
        let path = self.config.media_store_path.join(&media_id);
        tokio::fs::rename(&incoming.path, &path)
            .await
            .map_err(|e| MatrixError::internal(format!("cannot store media: {e}")))?;
        let mut incoming = incoming;
        incoming.kept = true;
        let row = MediaRow {
            media_id: media_id.clone(),
            uploader: user.clone(),
            content_type: upload.content_type,
            upload_name: upload.upload_name,
            size: incoming.size as i64,
            created_ts: axon::time::now_ms(),
        };
        if let Err(e) = self.storage.insert_media(row).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e.into());
        }
        Ok(media_id)
    }

    /// Streams an upload's body into a file beside the media, synced to
    /// disk; past `max_upload_size` it stops reading and refuses, so an
    /// upload never sits whole in memory.
    async fn receive(
        &self,
        media_id: &str,
        body: axum::body::Body,
    ) -> Result<Incoming, MatrixError> {
        use http_body_util::BodyExt;
        let max = self.config.max_upload_size;
        let mut incoming = Incoming {
            path: self
                .config
                .media_store_path
                .join(format!(".incoming-{media_id}")),
            size: 0,
            kept: false,
        };
        let store_error =
            |e: std::io::Error| MatrixError::internal(format!("cannot store media: {e}"));
        let mut file = tokio::fs::File::create(&incoming.path)
            .await
            .map_err(store_error)?;
        let mut body = body;
        let idle = self.config.http.body_timeout.0;
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Err(crate::api::stalled()),
                Ok(None) => break,
                Ok(Some(frame)) => frame.map_err(|e| {
                    MatrixError::new(400, ErrCode::Unknown, format!("the upload broke off: {e}"))
                })?,
            };
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            incoming.size += chunk.len() as u64;
            if incoming.size > max {
                return Err(too_large());
            }
            file.write_all(&chunk).await.map_err(store_error)?;
        }
        file.sync_all().await.map_err(store_error)?;
        Ok(incoming)
    }

    async fn check_upload(
        &self,
        user: &UserId,
        incoming: &Incoming,
        info: &FileInfo,
    ) -> Result<(), MatrixError> {
        let media = &self.callbacks.media_repository;
        let size = incoming.size;
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
            None => self
                .config
                .media_upload_limits
                .iter()
                .map(|l| MediaUploadLimit {
                    time_period_ms: l.time_period.as_millis(),
                    max_bytes: l.max_size,
                })
                .collect(),
        };
        limits.sort_by_key(|l| std::cmp::Reverse(l.time_period_ms));
        for limit in &limits {
            let since = axon::time::now_ms() - limit.time_period_ms as i64;
            let sent = self.storage.uploaded_bytes_since(user, since).await?;
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
        let spam = &self.callbacks.spam_checker;
        if spam.check_media_file_for_spam.is_empty() {
            return Ok(());
        }
        // Only a module that asks for the bytes gets them in memory.
        let bytes = tokio::fs::read(&incoming.path)
            .await
            .map_err(|e| MatrixError::internal(format!("cannot read the upload: {e}")))?;
        if let SpamCheck::Deny { .. } = spam.check_media_file_for_spam(&bytes, info).await? {
            return Err(MatrixError::new(400, ErrCode::Unknown, "Bad content"));
        }
        Ok(())
    }
}
