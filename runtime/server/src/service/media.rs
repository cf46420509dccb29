//! The media repository: uploads and the per-user media config.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::MediaRow;
use axon::callbacks::{FileInfo, MediaUploadLimit, SpamCheck};
use axon::ErrCode;
use ruma::UserId;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// An upload as the client sent it.
pub struct Upload {
    pub bytes: axum::body::Bytes,
    pub content_type: Option<String>,
    pub upload_name: Option<String>,
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

    /// Stores an upload; returns its media ID. The modules check it first, in
    /// Synapse's order: its size (`is_user_allowed_to_upload_media_of_size`),
    /// the user's upload limits (`get_media_upload_limits_for_user`,
    /// `on_media_upload_limit_exceeded`), then the content
    /// (`check_media_file_for_spam`). Nothing is stored if one refuses; the
    /// file is synced to disk before its row is committed, so an
    /// acknowledged upload survives a crash.
    pub async fn upload_media(&self, actor: &Actor, upload: Upload) -> Result<String, MatrixError> {
        let user = &actor.user_id;
        let media_id = super::random_string(24);
        let info = FileInfo {
            media_id: media_id.clone(),
            uploader: user.clone(),
            upload_name: upload.upload_name.clone(),
            content_type: upload.content_type.clone(),
            size: upload.bytes.len() as u64,
        };
        self.check_upload(user, &upload.bytes, &info).await?;
        let path = self.config.media_store_path.join(&media_id);
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| MatrixError::internal(format!("cannot store media: {e}")))?;
        let written = async {
            file.write_all(&upload.bytes).await?;
            file.sync_all().await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(MatrixError::internal(format!("cannot store media: {e}")));
        }
        let row = MediaRow {
            media_id: media_id.clone(),
            uploader: user.clone(),
            content_type: upload.content_type,
            upload_name: upload.upload_name,
            size: upload.bytes.len() as i64,
            created_ts: axon::time::now_ms(),
        };
        if let Err(e) = self.storage.insert_media(row).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e.into());
        }
        Ok(media_id)
    }

    async fn check_upload(
        &self,
        user: &UserId,
        bytes: &[u8],
        info: &FileInfo,
    ) -> Result<(), MatrixError> {
        let media = &self.callbacks.media_repository;
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
        if let SpamCheck::Deny { .. } = self
            .callbacks
            .spam_checker
            .check_media_file_for_spam(bytes, info)
            .await?
        {
            return Err(MatrixError::new(400, ErrCode::Unknown, "Bad content"));
        }
        Ok(())
    }
}
