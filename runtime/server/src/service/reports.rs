//! Users reporting events to the server's admins.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use axon::ErrCode;
use ruma::{EventId, RoomId};
use serde_json::json;

impl Homeserver {
    /// `POST /rooms/{room}/report/{event}`: a report of an event the user
    /// may see, with an optional reason and a score from -100 (most
    /// offensive) to 0, as Synapse takes it.
    pub async fn report_event(
        &self,
        actor: &Actor,
        room: &RoomId,
        event_id: &EventId,
        reason: Option<String>,
        score: Option<serde_json::Value>,
    ) -> Result<(), MatrixError> {
        if let Some(score) = &score {
            if !score.as_i64().is_some_and(|s| (-100..=0).contains(&s)) {
                return Err(MatrixError::new(
                    400,
                    ErrCode::InvalidParam,
                    "score must be an integer in range [-100, 0]",
                ));
            }
        }
        // Whatever the reason the user cannot see it, as Synapse: 404.
        self.visible_event(&actor.user_id, room, event_id.as_str())
            .await
            .map_err(|e| match e.status {
                403 | 404 => MatrixError::new(404, ErrCode::NotFound, "Unable to get event"),
                _ => e,
            })?;
        let content = json!({ "reason": reason, "score": score });
        self.storage
            .insert_event_report(room, event_id, &actor.user_id, reason, content)
            .await?;
        Ok(())
    }

    /// `GET /v1/rooms/{room}/timestamp_to_event`: the event the user may
    /// see nearest `ts`, after it (`forward`) or before it.
    pub async fn event_near_time(
        &self,
        actor: &Actor,
        room: &RoomId,
        ts: i64,
        forward: bool,
    ) -> Result<crate::storage::StoredEvent, MatrixError> {
        let upto = self.room_access(&actor.user_id, room).await?.upto;
        let not_found = || {
            MatrixError::new(
                404,
                ErrCode::NotFound,
                format!(
                    "Unable to find event from {ts} in direction {}",
                    if forward { "f" } else { "b" }
                ),
            )
        };
        // Nearest first; one the user may not see is stepped over.
        let mut from = ts;
        for _ in 0..100 {
            let Some(event) = self
                .storage
                .event_near_time(room, from, forward, upto)
                .await?
            else {
                return Err(not_found());
            };
            let next = if forward {
                event.origin_server_ts + 1
            } else {
                event.origin_server_ts - 1
            };
            let visible = self
                .visible_events(&actor.user_id, room, vec![event])
                .await?;
            if let Some(event) = visible.into_iter().next() {
                return Ok(event);
            }
            from = next;
        }
        Err(not_found())
    }
}
