//! Server-side key backup (`/room_keys`): versions and the encrypted room
//! keys in them, as the spec and Synapse keep them. Only the current
//! version takes uploads; a session uploaded again keeps the better key.

use super::MatrixError;
use crate::homeserver::Homeserver;
use crate::storage::{BackupVersion, RoomKeyBackup, RoomKeyUpload};
use axon::ErrCode;
use ruma::UserId;
use serde_json::{json, Map, Value};

fn unknown_version() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "Unknown backup version")
}

fn invalid(message: impl Into<String>) -> MatrixError {
    MatrixError::new(400, ErrCode::InvalidParam, message)
}

/// A version named in a path or query: versions are numbers, so anything
/// else names none (404, as Synapse).
pub fn parse_version(version: &str) -> Result<i64, MatrixError> {
    version.parse().map_err(|_| unknown_version())
}

/// What keys an upload or a read is about: all, a room's, or one session.
#[derive(Debug, Clone, Default)]
pub struct KeyScope {
    pub room: Option<String>,
    pub session: Option<String>,
}

fn version_body(v: BackupVersion) -> Value {
    json!({
        "version": v.version.to_string(),
        "algorithm": v.algorithm,
        "auth_data": serde_json::from_str::<Value>(&v.auth_data).unwrap_or_default(),
        "etag": v.etag.to_string(),
        "count": v.count,
    })
}

/// `algorithm` and `auth_data` of a version's body.
fn version_info(body: &Map<String, Value>) -> Result<(String, String), MatrixError> {
    let algorithm = body
        .get("algorithm")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::new(400, ErrCode::BadJson, "algorithm must be a string"))?;
    let auth_data = body
        .get("auth_data")
        .filter(|a| a.is_object())
        .ok_or_else(|| MatrixError::new(400, ErrCode::BadJson, "auth_data must be an object"))?;
    Ok((algorithm.to_string(), auth_data.to_string()))
}

/// One session's key as uploaded.
fn room_key(room: &str, session: &str, key: &Value) -> Result<RoomKeyBackup, MatrixError> {
    let whose = format!("in keys for session {session} in room {room}");
    let count = |field: &str| {
        key.get(field)
            .and_then(Value::as_i64)
            .filter(|n| *n >= 0)
            .ok_or_else(|| invalid(format!("{field} must be a non-negative integer {whose}")))
    };
    Ok(RoomKeyBackup {
        room_id: room.to_string(),
        session_id: session.to_string(),
        first_message_index: count("first_message_index")?,
        forwarded_count: count("forwarded_count")?,
        is_verified: key
            .get("is_verified")
            .and_then(Value::as_bool)
            .ok_or_else(|| invalid(format!("is_verified must be a boolean {whose}")))?,
        session_data: key
            .get("session_data")
            .filter(|d| d.is_object())
            .ok_or_else(|| invalid(format!("session_data must be an object {whose}")))?
            .to_string(),
    })
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, MatrixError> {
    value
        .as_object()
        .ok_or_else(|| MatrixError::new(400, ErrCode::BadJson, format!("{what} must be an object")))
}

/// The keys of an upload, in whichever of the three shapes its scope has.
fn uploaded_keys(scope: &KeyScope, body: &Value) -> Result<Vec<RoomKeyBackup>, MatrixError> {
    let sessions = |room: &str, sessions: &Value| -> Result<Vec<RoomKeyBackup>, MatrixError> {
        object(sessions, "sessions")?
            .iter()
            .map(|(session, key)| room_key(room, session, key))
            .collect()
    };
    match (&scope.room, &scope.session) {
        (Some(room), Some(session)) => Ok(vec![room_key(room, session, body)?]),
        (Some(room), None) => sessions(room, body.get("sessions").unwrap_or(&Value::Null)),
        _ => {
            let mut keys = Vec::new();
            for (room, of_room) in object(body.get("rooms").unwrap_or(&Value::Null), "rooms")? {
                keys.extend(sessions(
                    room,
                    of_room.get("sessions").unwrap_or(&Value::Null),
                )?);
            }
            Ok(keys)
        }
    }
}

fn key_body(key: &RoomKeyBackup) -> Value {
    json!({
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": serde_json::from_str::<Value>(&key.session_data).unwrap_or_default(),
    })
}

impl Homeserver {
    /// `POST /room_keys/version`: a new current version.
    pub async fn create_backup_version(
        &self,
        user: &UserId,
        body: Map<String, Value>,
    ) -> Result<Value, MatrixError> {
        let (algorithm, auth_data) = version_info(&body)?;
        let version = self
            .storage
            .create_backup_version(user, algorithm, auth_data)
            .await?;
        Ok(json!({ "version": version.to_string() }))
    }

    /// `GET /room_keys/version[/{version}]`: 404 `M_NOT_FOUND` when there
    /// is none (what Element takes for "no backup").
    pub async fn backup_version(
        &self,
        user: &UserId,
        version: Option<&str>,
    ) -> Result<Value, MatrixError> {
        let version = version.map(parse_version).transpose()?;
        let found = self.storage.backup_version(user, version).await?;
        found
            .map(version_body)
            .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "No backup found"))
    }

    /// `PUT /room_keys/version/{version}`: new `auth_data` for a version,
    /// whose algorithm cannot change.
    pub async fn update_backup_version(
        &self,
        user: &UserId,
        version: &str,
        body: Map<String, Value>,
    ) -> Result<Value, MatrixError> {
        if body
            .get("version")
            .is_some_and(|v| v.as_str() != Some(version))
        {
            return Err(invalid("Version in body does not match"));
        }
        let number = parse_version(version)?;
        let (algorithm, auth_data) = version_info(&body)?;
        let stored = self
            .storage
            .backup_version(user, Some(number))
            .await?
            .ok_or_else(unknown_version)?;
        if stored.algorithm != algorithm {
            return Err(invalid("Algorithm does not match"));
        }
        if !self
            .storage
            .update_backup_version(user, number, auth_data)
            .await?
        {
            return Err(unknown_version());
        }
        Ok(json!({}))
    }

    /// `DELETE /room_keys/version[/{version}]`, with the version's keys.
    pub async fn delete_backup_version(
        &self,
        user: &UserId,
        version: Option<&str>,
    ) -> Result<Value, MatrixError> {
        let version = version.map(parse_version).transpose()?;
        if !self.storage.delete_backup_version(user, version).await? {
            return Err(unknown_version());
        }
        Ok(json!({}))
    }

    /// `PUT /room_keys/keys[/{room}[/{session}]]?version=`: keys into the
    /// current version; its etag and count afterwards.
    pub async fn upload_room_keys(
        &self,
        user: &UserId,
        version: &str,
        scope: KeyScope,
        body: Value,
    ) -> Result<Value, MatrixError> {
        let number = parse_version(version)?;
        let keys = uploaded_keys(&scope, &body)?;
        match self.storage.upload_room_keys(user, number, keys).await? {
            RoomKeyUpload::Stored { etag, count } => {
                Ok(json!({ "etag": etag.to_string(), "count": count }))
            }
            RoomKeyUpload::UnknownVersion => Err(MatrixError::new(
                404,
                ErrCode::NotFound,
                format!("Version '{version}' not found"),
            )),
            RoomKeyUpload::NotCurrent { current } => Err(MatrixError::new(
                403,
                ErrCode::WrongRoomKeysVersion,
                "Wrong room_keys version",
            )
            .with_field("current_version", current.to_string())),
        }
    }

    /// `GET /room_keys/keys[/{room}[/{session}]]?version=`: in the shape
    /// the scope asks for; one missing session is 404, a room without keys
    /// `{"sessions": {}}`.
    pub async fn room_keys(
        &self,
        user: &UserId,
        version: &str,
        scope: KeyScope,
    ) -> Result<Value, MatrixError> {
        let number = parse_version(version)?;
        let keys = self
            .storage
            .room_keys(user, number, scope.room.clone(), scope.session.clone())
            .await?
            .ok_or_else(unknown_version)?;
        if scope.session.is_some() {
            return keys
                .first()
                .map(key_body)
                .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "No room_keys found"));
        }
        let mut rooms = Map::new();
        for key in &keys {
            let room = rooms
                .entry(key.room_id.clone())
                .or_insert_with(|| json!({ "sessions": {} }));
            room["sessions"][&key.session_id] = key_body(key);
        }
        Ok(match &scope.room {
            Some(room) => rooms
                .remove(room)
                .unwrap_or_else(|| json!({ "sessions": {} })),
            None => json!({ "rooms": rooms }),
        })
    }

    /// `DELETE /room_keys/keys[/{room}[/{session}]]?version=`.
    pub async fn delete_room_keys(
        &self,
        user: &UserId,
        version: &str,
        scope: KeyScope,
    ) -> Result<Value, MatrixError> {
        let number = parse_version(version)?;
        let (etag, count) = self
            .storage
            .delete_room_keys(user, number, scope.room, scope.session)
            .await?
            .ok_or_else(unknown_version)?;
        Ok(json!({ "etag": etag.to_string(), "count": count }))
    }
}
