//! Which of a room's events a user may see, for every way events reach a
//! client (`/messages`, `/event`, `/state`, `/members`, `/sync`): Synapse's
//! `filter_events_for_client`. Each event is judged by the user's membership
//! and the room's history visibility as they were at that event (the state
//! after it, so an event about the user is judged with it applied).
//!
//! Where Synapse is lax, Axon follows the spec: under `shared`, a user sees
//! an event they were not joined for only if they joined at some point after
//! it — Synapse shows it to anyone who ever had a membership, so a user who
//! rejected an invite read the history before it. And a user who was never
//! joined or invited (say, banned pre-emptively by a moderation bot) cannot
//! read the room at all unless it is `world_readable`.

use super::MatrixError;
use crate::homeserver::Homeserver;
use crate::storage::{RoomHistory, StoredEvent};
use axon::Membership;
use ruma::canonical_json::{redact_content_in_place, CanonicalJsonObject};
use ruma::{RoomId, UserId};
use serde_json::value::RawValue;

/// How far into a room a user may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomAccess {
    /// The last stream position they may read: `i64::MAX` while joined (or
    /// peeking a world-readable room), their leave or ban after it.
    pub upto: i64,
}

/// `m.room.history_visibility`, least restrictive first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HistoryVisibility {
    WorldReadable,
    Shared,
    Invited,
    Joined,
}

impl HistoryVisibility {
    /// Unknown values count as `shared`, as in Synapse and the spec.
    fn parse(value: &str) -> HistoryVisibility {
        match value {
            "world_readable" => HistoryVisibility::WorldReadable,
            "invited" => HistoryVisibility::Invited,
            "joined" => HistoryVisibility::Joined,
            _ => HistoryVisibility::Shared,
        }
    }
}

/// The latest value set at or before `at`.
fn latest<T: Copy>(changes: &[(i64, T)], at: i64) -> Option<T> {
    let after = changes.partition_point(|(p, _)| *p <= at);
    after.checked_sub(1).map(|i| changes[i].1)
}

fn visibility_at(visibilities: &[(i64, HistoryVisibility)], at: i64) -> HistoryVisibility {
    latest(visibilities, at).unwrap_or(HistoryVisibility::Shared)
}

/// What `user` may do with one event: see it, see it redacted (its sender
/// was erased and the user was not there to see it sent), or not see it.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Visible,
    Redacted,
    Hidden,
}

fn judge(
    history: &RoomHistory,
    visibilities: &[(i64, HistoryVisibility)],
    user: &UserId,
    event: &StoredEvent,
    sender_erased: bool,
) -> Verdict {
    let at = event.stream;
    if event.event_type == "m.room.member" && event.state_key.as_deref() == Some(user.as_str()) {
        // Their own membership: an invite, a ban, the leave of a rejection.
        return Verdict::Visible;
    }
    let mut visibility = visibility_at(visibilities, at);
    if event.event_type == "m.room.history_visibility" && event.state_key.as_deref() == Some("") {
        // A change is judged by the laxer of the old and new visibility,
        // so its boundary is seen from both sides.
        visibility = visibility.min(visibility_at(visibilities, at - 1));
    }
    let membership = latest(&history.memberships, at);
    if membership == Some(Membership::Join) {
        return Verdict::Visible;
    }
    let allowed = match visibility {
        HistoryVisibility::WorldReadable => true,
        HistoryVisibility::Shared => history
            .memberships
            .iter()
            .any(|(p, m)| *p >= at && *m == Membership::Join),
        HistoryVisibility::Invited => membership == Some(Membership::Invite),
        HistoryVisibility::Joined => false,
    };
    match (allowed, sender_erased) {
        (false, _) => Verdict::Hidden,
        (true, true) => Verdict::Redacted,
        (true, false) => Verdict::Visible,
    }
}

/// The event with its content reduced to what the room version's
/// redaction algorithm keeps.
pub(crate) fn redacted(mut event: StoredEvent, room_version: &str) -> StoredEvent {
    let content: Option<CanonicalJsonObject> = serde_json::from_str(event.content.get()).ok();
    let mut content = content.unwrap_or_default();
    redact_content_in_place(
        &mut content,
        &crate::events::room_version_rules(room_version).redaction,
        &event.event_type,
    );
    if let Ok(text) = serde_json::to_string(&content) {
        if let Ok(raw) = RawValue::from_string(text) {
            event.content = raw;
        }
    }
    event.prev_content = None;
    event
}

impl Homeserver {
    /// Whether `user` may read `room` at all, and up to where: while joined,
    /// all of it; after leaving or being banned, up to that, if they were
    /// ever joined or invited; a world-readable room, all of it. Otherwise
    /// 403, before anything of the room is read.
    pub async fn room_access(
        &self,
        user: &UserId,
        room: &RoomId,
    ) -> Result<RoomAccess, MatrixError> {
        let current = self.storage.membership(user, room).await?;
        if let Some((membership, at)) = current {
            if membership == Membership::Join {
                return Ok(RoomAccess { upto: i64::MAX });
            }
            if matches!(membership, Membership::Leave | Membership::Ban) {
                let history = self.storage.room_history(room, user).await?;
                let was_in = history
                    .memberships
                    .iter()
                    .any(|(_, m)| matches!(m, Membership::Join | Membership::Invite));
                if was_in {
                    return Ok(RoomAccess { upto: at });
                }
            }
        }
        if self.world_readable(room).await? {
            return Ok(RoomAccess { upto: i64::MAX });
        }
        Err(MatrixError::forbidden(format!(
            "User {user} not in room {room}, and room previews are disabled"
        )))
    }

    async fn world_readable(&self, room: &RoomId) -> Result<bool, MatrixError> {
        let event = self
            .storage
            .current_state_event(room, "m.room.history_visibility", "")
            .await?;
        Ok(event
            .and_then(|e| serde_json::from_str::<serde_json::Value>(e.content.get()).ok())
            .is_some_and(|c| c["history_visibility"] == "world_readable"))
    }

    /// One event of `room` that `user` may see: 403 if they may not read
    /// the room, 404 if it is not there or not theirs to see.
    pub async fn visible_event(
        &self,
        user: &UserId,
        room: &RoomId,
        event_id: &str,
    ) -> Result<StoredEvent, MatrixError> {
        let upto = self.room_access(user, room).await?.upto;
        let not_found = || MatrixError::new(404, axon::ErrCode::NotFound, "Event not found.");
        let event_id = ruma::EventId::parse(event_id).map_err(|_| not_found())?;
        let event = self
            .storage
            .get_event(&event_id)
            .await?
            .filter(|e| e.room_id == room && e.stream <= upto)
            .ok_or_else(not_found)?;
        self.visible_events(user, room, vec![event])
            .await?
            .pop()
            .ok_or_else(not_found)
    }

    /// The events of `room` that `user` may see, in order, those of erased
    /// senders redacted unless the user was joined when they were sent.
    pub async fn visible_events(
        &self,
        user: &UserId,
        room: &RoomId,
        events: Vec<StoredEvent>,
    ) -> Result<Vec<StoredEvent>, MatrixError> {
        let current = self.storage.membership(user, room).await?;
        self.visible_events_given(user, room, current, events).await
    }

    /// `visible_events`, given the user's current membership in the room.
    pub(crate) async fn visible_events_given(
        &self,
        user: &UserId,
        room: &RoomId,
        current: Option<(Membership, i64)>,
        events: Vec<StoredEvent>,
    ) -> Result<Vec<StoredEvent>, MatrixError> {
        // The common case, a member reading what was sent since they joined,
        // needs no history.
        if let Some((Membership::Join, joined_at)) = current {
            if events.iter().all(|e| e.stream >= joined_at) {
                return Ok(events);
            }
        }
        if events.is_empty() {
            return Ok(events);
        }
        let history = self.storage.room_history(room, user).await?;
        let mut senders: Vec<_> = events.iter().map(|e| e.sender.clone()).collect();
        senders.sort();
        senders.dedup();
        let erased = self.storage.erased_among(senders).await?;
        let visibilities: Vec<(i64, HistoryVisibility)> = history
            .visibilities
            .iter()
            .map(|(at, v)| (*at, HistoryVisibility::parse(v)))
            .collect();
        Ok(events
            .into_iter()
            .filter_map(|event| {
                match judge(
                    &history,
                    &visibilities,
                    user,
                    &event,
                    erased.contains(&event.sender),
                ) {
                    Verdict::Visible => Some(event),
                    Verdict::Redacted => Some(redacted(event, &history.room_version)),
                    Verdict::Hidden => None,
                }
            })
            .collect())
    }
}
