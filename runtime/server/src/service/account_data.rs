//! Account data: global and per room.

use super::{Actor, MatrixError, Via};
use crate::homeserver::Homeserver;
use axon::callbacks::JsonObject;
use axon::ErrCode;
use ruma::{RoomId, UserId};

/// Bytes of one account data item, as JSON: each is sent in full in every
/// initial `/sync` (Synapse has no limit but its request size).
pub const MAX_ACCOUNT_DATA_SIZE: usize = 64 * 1024;

/// Longest room tag name, in bytes (Synapse's `MAX_TAG_LENGTH`).
const MAX_TAG_LENGTH: usize = 255;

/// Room tags are the room account data `m.tag` (`{"tags": {tag: content}}`),
/// which is how `/sync` delivers them: one store, not a table beside it.
const TAG_TYPE: &str = "m.tag";

/// The tags of a stored `m.tag` (none if it is absent or malformed).
fn tags_of(stored: Option<serde_json::Value>) -> JsonObject {
    match stored.and_then(|mut s| s.get_mut("tags").map(serde_json::Value::take)) {
        Some(serde_json::Value::Object(tags)) => tags,
        _ => JsonObject::new(),
    }
}

impl Homeserver {
    /// `PUT /user/{user}/[rooms/{room}/]account_data/{type}`, and a module's
    /// `put_global_account_data`: stored, delivered by `/sync`, and
    /// `on_account_data_updated` hears of it. A client writes only its own.
    pub async fn put_account_data(
        &self,
        actor: &Actor,
        user: &UserId,
        room: Option<&RoomId>,
        data_type: &str,
        content: JsonObject,
    ) -> Result<(), MatrixError> {
        if actor.via == Via::Client && actor.user_id != user {
            return Err(MatrixError::forbidden(
                "Cannot add account data for other users.",
            ));
        }
        if data_type == "m.fully_read" || data_type == "m.push_rules" {
            return Err(MatrixError::new(
                400,
                ErrCode::BadJson,
                format!("Cannot set {data_type} through this API."),
            ));
        }
        let size = serde_json::to_string(&content).map_or(0, |text| text.len());
        if size > MAX_ACCOUNT_DATA_SIZE {
            return Err(MatrixError::new(
                413,
                ErrCode::TooLarge,
                format!("Account data is too large (max {MAX_ACCOUNT_DATA_SIZE} bytes)"),
            ));
        }
        if actor.via != Via::Client && self.storage.get_user(user).await?.is_none() {
            return Err(MatrixError::new(
                404,
                ErrCode::NotFound,
                format!("no user {user}"),
            ));
        }
        self.store_account_data(user, room, data_type, content)
            .await
    }

    /// Stores account data the server itself sets (such as `m.fully_read`)
    /// as well as a client's, and tells `on_account_data_updated`.
    pub(crate) async fn store_account_data(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        data_type: &str,
        content: JsonObject,
    ) -> Result<(), MatrixError> {
        self.storage
            .put_account_data(
                user,
                room,
                data_type,
                serde_json::Value::Object(content.clone()),
            )
            .await?;
        self.callbacks
            .account_data
            .on_account_data_updated(user, room, data_type, &content)
            .await;
        Ok(())
    }

    /// `POST /user/{user}/filter`: stores a filter (the same filter twice
    /// gets the same ID, as in Synapse) within `MAX_ACCOUNT_DATA_SIZE`.
    pub async fn put_filter(
        &self,
        user: &UserId,
        filter: serde_json::Value,
    ) -> Result<i64, MatrixError> {
        let size = serde_json::to_string(&filter).map_or(0, |text| text.len());
        if size > MAX_ACCOUNT_DATA_SIZE {
            return Err(MatrixError::new(
                413,
                ErrCode::TooLarge,
                format!("Filter is too large (max {MAX_ACCOUNT_DATA_SIZE} bytes)"),
            ));
        }
        super::filters::validate_filter(&filter)?;
        Ok(self.storage.put_filter(user, filter).await?)
    }

    /// `GET /user/{user}/rooms/{room}/tags`.
    pub async fn room_tags(
        &self,
        actor: &Actor,
        user: &UserId,
        room: &RoomId,
    ) -> Result<serde_json::Value, MatrixError> {
        if actor.user_id != user {
            return Err(MatrixError::forbidden("Cannot get tags for other users."));
        }
        let stored = self
            .storage
            .get_account_data(user, Some(room), TAG_TYPE)
            .await?;
        Ok(serde_json::json!({ "tags": tags_of(stored) }))
    }

    /// `PUT` (with `Some(content)`) and `DELETE /user/{user}/rooms/{room}/tags/{tag}`:
    /// changes one tag in one write (concurrent changes to other tags all
    /// land); `on_account_data_updated` hears of the new `m.tag`.
    pub async fn set_room_tag(
        &self,
        actor: &Actor,
        user: &UserId,
        room: &RoomId,
        tag: &str,
        content: Option<JsonObject>,
    ) -> Result<(), MatrixError> {
        if actor.user_id != user {
            return Err(MatrixError::forbidden("Cannot add tags for other users."));
        }
        if tag.len() > MAX_TAG_LENGTH {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                "tag parameter's length is over 255 bytes",
            ));
        }
        if content.is_some() && self.storage.membership(user, room).await?.is_none() {
            return Err(MatrixError::forbidden(format!(
                "User {user} has no membership in room {room}"
            )));
        }
        let tag = tag.to_string();
        let written = self
            .storage
            .update_account_data(user, Some(room), TAG_TYPE, move |stored| {
                let mut tags = tags_of(stored);
                let changed = match content {
                    Some(content) => {
                        let content = serde_json::Value::Object(content);
                        tags.insert(tag, content.clone()) != Some(content)
                    }
                    None => tags.remove(&tag).is_some(),
                };
                let tags = serde_json::json!({ "tags": tags });
                let size = tags.to_string().len();
                if size > MAX_ACCOUNT_DATA_SIZE {
                    return Err(MatrixError::new(
                        413,
                        ErrCode::TooLarge,
                        format!("Room tags are too large (max {MAX_ACCOUNT_DATA_SIZE} bytes)"),
                    ));
                }
                Ok(changed.then_some(tags))
            })
            .await??;
        if let Some((_, serde_json::Value::Object(content))) = written {
            self.callbacks
                .account_data
                .on_account_data_updated(user, Some(room), TAG_TYPE, &content)
                .await;
        }
        Ok(())
    }

    /// A room upgrade: the user's tags of the old room, for the new one
    /// (unless it has some already).
    pub(crate) async fn copy_room_tags(
        &self,
        user: &UserId,
        from: &RoomId,
        to: &RoomId,
    ) -> Result<(), MatrixError> {
        let Some(old) = self
            .storage
            .get_account_data(user, Some(from), TAG_TYPE)
            .await?
        else {
            return Ok(());
        };
        let written = self
            .storage
            .update_account_data(user, Some(to), TAG_TYPE, move |existing| {
                Ok::<_, MatrixError>(existing.is_none().then_some(old))
            })
            .await??;
        if let Some((_, serde_json::Value::Object(content))) = written {
            self.callbacks
                .account_data
                .on_account_data_updated(user, Some(to), TAG_TYPE, &content)
                .await;
        }
        Ok(())
    }
}
