//! Typing notifications: who is typing in each room, kept in memory (as in
//! Synapse) with each change at a stream position so `/sync` sends the
//! room's new list once; a typer whose timeout passes is dropped.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::{Storage, WakeKey};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest typing timeout honoured, as a client may ask for any.
const MAX_TYPING_TIMEOUT: Duration = Duration::from_secs(120);
/// Without a timeout, as Synapse.
pub(crate) const DEFAULT_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct RoomTyping {
    /// Each typer, until when.
    users: HashMap<OwnedUserId, Instant>,
    /// The stream position of the last change.
    position: i64,
}

/// Who types where.
#[derive(Default, Clone)]
pub struct Typing {
    rooms: Arc<Mutex<HashMap<OwnedRoomId, RoomTyping>>>,
}

impl Typing {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedRoomId, RoomTyping>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room's typers, if its list changed after `after` (or, with
    /// `fresh`, if anyone types).
    pub fn changed_since(&self, room: &RoomId, after: i64, fresh: bool) -> Option<Vec<String>> {
        let rooms = self.lock();
        let typing = rooms.get(room)?;
        let shown = if fresh {
            !typing.users.is_empty()
        } else {
            typing.position > after
        };
        if !shown {
            return None;
        }
        let mut users: Vec<String> = typing.users.keys().map(|u| u.to_string()).collect();
        users.sort();
        Some(users)
    }

    /// Sets or clears a typer; answers whether the room's list changed.
    fn set(&self, room: &RoomId, user: &UserId, until: Option<Instant>) -> bool {
        let mut rooms = self.lock();
        let typing = rooms.entry(room.to_owned()).or_default();
        match until {
            Some(until) => typing.users.insert(user.to_owned(), until).is_none(),
            None => typing.users.remove(user).is_some(),
        }
    }

    /// Drops the typer if their time is up (a later PUT may have extended it).
    fn expire(&self, room: &RoomId, user: &UserId) -> bool {
        let mut rooms = self.lock();
        let Some(typing) = rooms.get_mut(room) else {
            return false;
        };
        match typing.users.get(user) {
            Some(until) if *until <= Instant::now() => {
                typing.users.remove(user);
                true
            }
            _ => false,
        }
    }

    /// Records the position of a change and wakes the room.
    async fn publish(&self, storage: &Storage, room: &RoomId) -> Result<(), MatrixError> {
        let (state, key) = (self.clone(), room.to_owned());
        storage
            .mark_position(
                "typing",
                vec![WakeKey::Room(room.to_owned())],
                move |position| {
                    let mut rooms = state.lock();
                    let typing = rooms.entry(key).or_default();
                    typing.position = typing.position.max(position);
                },
            )
            .await?;
        Ok(())
    }
}

impl Homeserver {
    /// `PUT /rooms/{room}/typing/{user}`: a joined member starts typing for
    /// `timeout` (at most two minutes) or stops.
    pub async fn set_typing(
        &self,
        actor: &Actor,
        room: &RoomId,
        user: &UserId,
        typing: bool,
        timeout: Option<Duration>,
    ) -> Result<(), MatrixError> {
        if actor.user_id != user {
            return Err(MatrixError::forbidden(
                "Cannot set another user's typing state",
            ));
        }
        self.check_joined(user, room).await?;
        let timeout = timeout
            .unwrap_or(DEFAULT_TYPING_TIMEOUT)
            .min(MAX_TYPING_TIMEOUT);
        // The other servers in the room hear of each change, and of each
        // renewal (theirs expire it).
        if self.apply_typing(room, user, typing, timeout).await? || typing {
            if let Some(snapshot) = self.storage.room_snapshot(room).await? {
                let servers = super::remote_servers(&snapshot, &self.server_name);
                let edu = serde_json::json!({
                    "edu_type": "m.typing",
                    "content": { "room_id": room, "user_id": user, "typing": typing },
                });
                self.queue_edu(&servers, &edu).await?;
            }
        }
        Ok(())
    }

    /// Starts or stops `user` typing in `room` (until `timeout` passes):
    /// whether the room's list changed.
    pub(crate) async fn apply_typing(
        &self,
        room: &RoomId,
        user: &UserId,
        typing: bool,
        timeout: Duration,
    ) -> Result<bool, MatrixError> {
        let until = typing.then(|| Instant::now() + timeout);
        let changed = self.typing.set(room, user, until);
        if changed {
            self.typing.publish(&self.storage, room).await?;
        }
        if typing {
            let (state, storage) = (self.typing.clone(), self.storage.clone());
            let (room, user) = (room.to_owned(), user.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if state.expire(&room, &user) {
                    let _ = state.publish(&storage, &room).await;
                }
            });
        }
        Ok(changed)
    }
}
