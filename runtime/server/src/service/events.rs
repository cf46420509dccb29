//! Sending events: a client's message or state event, a module's event, the
//! events other services make (memberships, room creation); and serving
//! events to clients with the fields modules add.

use super::{denial, refused, Actor, MatrixError};
use crate::events::{build_event, check_auth, module_event, BuiltEvent, EventDraft};
use crate::homeserver::Homeserver;
use crate::service::{MembershipChange, Requester};
use crate::storage::{
    NewEvent, Persisted, RoomSnapshot, SnapshotUpdate, StorageError, StoredEvent,
};
use axon::callbacks::{Event, EventAllowed, JsonObject, StateMap};
use axon::{ErrCode, Membership};
use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId, UserId};
use serde_json::Value;
use std::sync::Arc;

/// How an event is sent, which decides the checks it goes through.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// The client's transaction ID: a repeat from the same device returns
    /// the first event's ID.
    pub txn_id: Option<String>,
    /// Client messages and state go through `check_event_for_spam`;
    /// memberships and the events of room creation do not (as in Synapse).
    pub spam_check: bool,
}

/// What a shadow-banned user's send answers with: an event ID that looks
/// real, for an event nobody else sees (as Synapse does).
pub(crate) fn shadow_event_id() -> OwnedEventId {
    OwnedEventId::try_from(format!("${}", super::random_string(43)))
        .unwrap_or_else(|_| unreachable!("a `$` and letters make an event ID"))
}

/// An invite of a user of another server, which their server must accept.
fn is_remote_invite(new: &NewEvent, own: &ruma::ServerName) -> bool {
    new.event_type == "m.room.member"
        && new
            .state_key
            .as_deref()
            .and_then(|k| UserId::parse(k).ok())
            .is_some_and(|u| u.server_name() != own)
        && serde_json::from_str::<Value>(&new.content).is_ok_and(|c| c["membership"] == "invite")
}

fn not_in_room(user: &UserId, room: &RoomId) -> MatrixError {
    MatrixError::forbidden(format!("User {user} not in room {room}"))
}

impl Homeserver {
    /// `PUT /rooms/{room}/send/{type}/{txn}`, and a module's
    /// `create_and_send_event_into_room` of a message: rate-limited for
    /// clients (`rc_message`), through `check_event_allowed` and
    /// `check_event_for_spam`.
    pub async fn send_message(
        &self,
        actor: &Actor,
        room: &RoomId,
        event_type: String,
        content: JsonObject,
        txn_id: Option<String>,
    ) -> Result<OwnedEventId, MatrixError> {
        // A retry of a transaction that completed gets its answer again,
        // without counting against the rate limit.
        if let (Some(device), Some(txn)) = (&actor.device_id, &txn_id) {
            if let Some(existing) = self
                .storage
                .event_for_txn(&actor.user_id, device, room, &event_type, txn)
                .await?
            {
                return Ok(existing);
            }
        }
        if event_type == "m.room.redaction" {
            self.check_redaction(actor, room, &content).await?;
        }
        if actor.is_ratelimited() {
            self.ratelimit_user("rc_message", &actor.user_id, self.config.rc_message)
                .await?;
        }
        if actor.shadow_banned {
            return Ok(shadow_event_id());
        }
        let draft = EventDraft {
            sender: actor.user_id.clone(),
            event_type,
            state_key: None,
            content,
        };
        let options = SendOptions {
            txn_id,
            spam_check: true,
        };
        self.send_event(actor, room, draft, options).await
    }

    /// `PUT /rooms/{room}/redact/{event}/{txn}`: the sender of an event, or
    /// a member with the room's `redact` power level, redacts it. Sent as a
    /// message is (rate limit, transaction, spam check); from then on every
    /// read serves the event redacted.
    pub async fn redact_event(
        &self,
        actor: &Actor,
        room: &RoomId,
        target: &EventId,
        reason: Option<String>,
        txn_id: Option<String>,
    ) -> Result<OwnedEventId, MatrixError> {
        let mut content = JsonObject::new();
        content.insert("redacts".into(), target.as_str().into());
        if let Some(reason) = reason {
            content.insert("reason".into(), reason.into());
        }
        self.send_message(actor, room, "m.room.redaction".into(), content, txn_id)
            .await
    }

    /// A room's canonical alias and `alt_aliases` must each be an alias
    /// that points to the room (400 `M_BAD_ALIAS` otherwise, as Synapse);
    /// Axon can check only its own aliases, so another server's is refused.
    async fn check_canonical_aliases(
        &self,
        room: &RoomId,
        content: &JsonObject,
    ) -> Result<(), MatrixError> {
        let invalid = |message: String| MatrixError::new(400, ErrCode::InvalidParam, message);
        let mut aliases = Vec::new();
        if let Some(alias) = content.get("alias") {
            aliases.push(
                alias
                    .as_str()
                    .ok_or_else(|| invalid("alias must be a string".into()))?
                    .to_string(),
            );
        }
        if let Some(alt) = content.get("alt_aliases") {
            let alt = alt
                .as_array()
                .ok_or_else(|| invalid("alt_aliases must be a list of aliases".into()))?;
            for alias in alt {
                aliases.push(
                    alias
                        .as_str()
                        .ok_or_else(|| invalid("alt_aliases must be a list of aliases".into()))?
                        .to_string(),
                );
            }
        }
        for alias in aliases {
            let parsed = ruma::RoomAliasId::parse(&alias)
                .map_err(|e| invalid(format!("invalid room alias `{alias}`: {e}")))?;
            let points_here = parsed.server_name() == self.server_name
                && self
                    .storage
                    .get_alias(&parsed)
                    .await?
                    .is_some_and(|(target, _)| target == room);
            if !points_here {
                return Err(MatrixError::new(
                    400,
                    ErrCode::BadAlias,
                    format!("Room alias {alias} does not point to the room"),
                ));
            }
        }
        Ok(())
    }

    /// A redaction, however it is sent, names an event of the room that its
    /// sender sent or may redact by power level.
    async fn check_redaction(
        &self,
        actor: &Actor,
        room: &RoomId,
        content: &JsonObject,
    ) -> Result<(), MatrixError> {
        let target = content
            .get("redacts")
            .and_then(Value::as_str)
            .and_then(|id| EventId::parse(id).ok())
            .ok_or_else(|| {
                MatrixError::new(
                    400,
                    ErrCode::BadJson,
                    "A redaction needs `redacts`: the ID of the event it redacts",
                )
            })?;
        let event = match self.storage.get_event(&target).await? {
            Some(event) if event.room_id == room => event,
            _ => {
                return Err(MatrixError::new(
                    404,
                    ErrCode::NotFound,
                    format!("Event {target} not found in room {room}"),
                ))
            }
        };
        if event.sender == actor.user_id {
            return Ok(());
        }
        let snapshot = self
            .storage
            .room_snapshot(room)
            .await?
            .ok_or_else(|| not_in_room(&actor.user_id, room))?;
        let levels = crate::events::PowerLevels::of(&snapshot);
        if levels.user_level(actor.user_id.as_str()) < levels.redact {
            return Err(MatrixError::forbidden(
                "You don't have permission to redact events",
            ));
        }
        Ok(())
    }

    /// `PUT /rooms/{room}/state/{type}/{key}`, and a module's state event.
    /// A membership goes through the membership service; anything else is
    /// rate-limited for clients, asks `user_may_send_state_event` (not for
    /// server admins), then is sent as a message is.
    pub async fn set_state(
        &self,
        actor: &Actor,
        room: &RoomId,
        event_type: String,
        state_key: String,
        content: JsonObject,
    ) -> Result<OwnedEventId, MatrixError> {
        if event_type == "m.room.member" {
            let target = super::user_id_param(&state_key)?;
            let membership = content
                .get("membership")
                .and_then(Value::as_str)
                .and_then(Membership::parse)
                .ok_or_else(|| {
                    MatrixError::new(
                        400,
                        ErrCode::BadJson,
                        "m.room.member content needs a membership of join, invite, leave, ban or knock",
                    )
                })?;
            let mut change = MembershipChange::new(room, &target, membership);
            change.reason = content
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            return self.change_membership(actor, change).await;
        }
        if event_type == "m.room.canonical_alias" && state_key.is_empty() {
            self.check_canonical_aliases(room, &content).await?;
        }
        if actor.is_ratelimited() {
            self.ratelimit_user("rc_message", &actor.user_id, self.config.rc_message)
                .await?;
        }
        if !actor.admin {
            let verdict = self
                .callbacks
                .spam_checker
                .user_may_send_state_event(&actor.user_id, room, &event_type, &state_key, &content)
                .await?;
            refused(verdict, "You are not permitted to send the state event")?;
        }
        if actor.shadow_banned {
            return Ok(shadow_event_id());
        }
        let draft = EventDraft {
            sender: actor.user_id.clone(),
            event_type,
            state_key: Some(state_key),
            content,
        };
        let options = SendOptions {
            txn_id: None,
            spam_check: true,
        };
        self.send_event(actor, room, draft, options).await
    }

    /// Builds, authorises, checks with the modules and stores an event;
    /// returns its ID. After it is stored, `on_new_event` runs in the
    /// background. The other services send through here.
    pub(crate) async fn send_event(
        &self,
        actor: &Actor,
        room: &RoomId,
        draft: EventDraft,
        options: SendOptions,
    ) -> Result<OwnedEventId, MatrixError> {
        // The writer recognises a repeated transaction; the read here is only
        // for a retry that would now be refused (the sender left meanwhile):
        // it still gets the event it sent the first time.
        let txn = match (&actor.device_id, &options.txn_id) {
            (Some(device), Some(txn_id)) => Some((device.clone(), txn_id.clone())),
            _ => None,
        };
        let (sender, event_type) = (draft.sender.clone(), draft.event_type.clone());
        let earlier_send = || async {
            match &txn {
                Some((device, txn_id)) => {
                    self.storage
                        .event_for_txn(&sender, device, room, &event_type, txn_id)
                        .await
                }
                None => Ok(None),
            }
        };
        for attempt in 1.. {
            let (built, snapshot) = match self
                .prepare_event(room, draft.clone(), options.spam_check)
                .await
            {
                Ok(prepared) => prepared,
                Err(e) => {
                    if let Some(existing) = earlier_send().await? {
                        return Ok(existing);
                    }
                    return Err(e);
                }
            };
            let built = if is_remote_invite(&built.new, &self.server_name) {
                self.invite_remote(&snapshot, built).await?
            } else {
                built
            };
            let mut new = built.new;
            new.destinations = self.destinations_for(&snapshot, &new);
            if let Some((device, txn_id)) = &txn {
                new.device_id = Some(device.clone());
                new.txn_id = Some(txn_id.clone());
            }
            new.notifies = self.notifications_for(&snapshot, &new).await?;
            let pushed: Vec<OwnedUserId> = if self.pushers.any() {
                new.notifies.iter().map(|n| n.user_id.clone()).collect()
            } else {
                Vec::new()
            };
            let work = self.new_event_work(&snapshot, std::slice::from_ref(&new));
            drop(snapshot);
            let persisted = match self
                .storage
                .persist_events(None, vec![new], Some(crate::events::recheck_auth))
                .await
            {
                // Another request built the very same event (same sender,
                // content, parents and millisecond), so the same ID: build this
                // one again a random few milliseconds later, so that it (and
                // any other send it collided with) gets an ID of its own.
                Err(StorageError::Conflict(_)) if attempt < 20 => {
                    if let Some(existing) = earlier_send().await? {
                        return Ok(existing);
                    }
                    let wait = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=4);
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                    continue;
                }
                other => other?,
            };
            let persisted = persisted
                .into_iter()
                .next()
                .ok_or_else(|| MatrixError::internal("the event was not stored"))?;
            if let Persisted::New { .. } = persisted {
                self.announce_new_events(work);
                let pushed: Vec<&UserId> = pushed.iter().map(|u| u.as_ref()).collect();
                self.pushers.wake(&pushed);
            }
            return Ok(persisted.event_id().to_owned());
        }
        unreachable!("the loop returns")
    }

    /// Authorises and builds the next event of a room, then asks the modules:
    /// `check_event_allowed` (which may replace it), then `check_event_for_spam`.
    async fn prepare_event(
        &self,
        room: &RoomId,
        draft: EventDraft,
        spam_check: bool,
    ) -> Result<(BuiltEvent, Arc<RoomSnapshot>), MatrixError> {
        let snapshot = self
            .storage
            .room_snapshot(room)
            .await?
            .ok_or_else(|| not_in_room(&draft.sender, room))?;
        check_auth(&snapshot, &draft)?;
        let (built, hashes) = self.build_now(&snapshot, &draft).await?;
        let built = self.allow_event(&snapshot, built, draft, &hashes).await?;
        let spam = &self.callbacks.spam_checker;
        if spam_check && !spam.check_event_for_spam.is_empty() {
            if let axon::callbacks::SpamCheck::Deny {
                errcode,
                extra_fields,
            } = spam
                .check_event_for_spam(&module_event(&built.new)?)
                .await?
            {
                return Err(denial(
                    "This message has been rejected as probable spam",
                    errcode,
                    extra_fields,
                ));
            }
        }
        Ok((built, snapshot))
    }

    /// `draft` built on the room as `snapshot` has it, now, hashed and
    /// signed by this server, with the hashes of what it refers to.
    pub(crate) async fn build_now(
        &self,
        snapshot: &RoomSnapshot,
        draft: &EventDraft,
    ) -> Result<(BuiltEvent, crate::events::ReferenceHashes), MatrixError> {
        let hashes = self.reference_hashes(snapshot, draft).await?;
        let built = build_event(
            snapshot,
            draft,
            axon::time::now_ms(),
            &hashes,
            &self.server_keys,
        )?;
        Ok((built, hashes))
    }

    /// The content hashes of what a draft would refer to, in room versions
    /// that write them (1 and 2); empty otherwise.
    pub(crate) async fn reference_hashes(
        &self,
        snapshot: &RoomSnapshot,
        draft: &EventDraft,
    ) -> Result<crate::events::ReferenceHashes, MatrixError> {
        if !crate::events::references_with_hashes(&snapshot.room_version) {
            return Ok(Default::default());
        }
        let mut ids = snapshot.extremities.clone();
        ids.extend(crate::events::auth_event_ids(snapshot, draft));
        Ok(self.storage.content_hashes(ids).await?)
    }

    /// `check_event_allowed` with the state before the event: allowed as is,
    /// refused, or replaced. A replacement is authorised and built anew on the
    /// room as it is now (as Synapse rebuilds it): a module may have sent events
    /// of its own first (synapse-freeze-room does).
    pub(crate) async fn allow_event(
        &self,
        snapshot: &RoomSnapshot,
        built: BuiltEvent,
        draft: EventDraft,
        known: &crate::events::ReferenceHashes,
    ) -> Result<BuiltEvent, MatrixError> {
        let rules = &self.callbacks.third_party_rules;
        if rules.check_event_allowed.is_empty() {
            return Ok(built);
        }
        let event = module_event(&built.new)?;
        match rules.check_event_allowed(&event, &snapshot.state).await? {
            EventAllowed::Allow => Ok(built),
            EventAllowed::Deny => Err(MatrixError::forbidden(
                "This event is not allowed in this context",
            )),
            EventAllowed::Replace(replacement) => {
                let draft = EventDraft {
                    sender: draft.sender,
                    event_type: replacement.event_type,
                    state_key: replacement.state_key,
                    content: replacement.content,
                };
                // During createRoom the room is not stored yet: build on the snapshot.
                let current = self.storage.room_snapshot(&snapshot.room_id).await?;
                let base = current.as_deref().unwrap_or(snapshot);
                if draft.event_type != "m.room.create" {
                    check_auth(base, &draft)?;
                }
                // During createRoom the events it refers to are not stored
                // yet: `known` has their hashes.
                let mut hashes = self.reference_hashes(base, &draft).await?;
                hashes.extend(known.iter().map(|(k, v)| (k.clone(), v.clone())));
                build_event(
                    base,
                    &draft,
                    built.new.origin_server_ts,
                    &hashes,
                    &self.server_keys,
                )
            }
        }
    }

    /// What `on_new_event` will need once `events` are stored: each event with
    /// the room state after it. Computed before the commit so nothing holds the
    /// room snapshot across it (the writer then updates the cached one in
    /// place instead of copying it); `None` when no module listens.
    pub(crate) fn new_event_work(
        &self,
        before: &RoomSnapshot,
        events: &[NewEvent],
    ) -> Option<Vec<(Event, StateMap)>> {
        if self.callbacks.third_party_rules.on_new_event.is_empty() {
            return None;
        }
        let mut snapshot = before.clone();
        let mut work = Vec::new();
        for new in events {
            snapshot.apply(&SnapshotUpdate::from(new));
            if let Ok(event) = module_event(new) {
                work.push((event, snapshot.state.clone()));
            }
        }
        Some(work)
    }

    /// After events are stored: `on_new_event` for each, in the background (it
    /// cannot refuse, and must not delay the reply).
    pub(crate) fn announce_new_events(&self, work: Option<Vec<(Event, StateMap)>>) {
        let Some(work) = work else { return };
        let callbacks = self.callbacks.clone();
        tokio::spawn(async move {
            for (event, state_after) in work {
                callbacks
                    .third_party_rules
                    .on_new_event(&event, &state_after)
                    .await;
            }
        });
    }

    /// Events in the client format, with the fields modules add to
    /// `unsigned` (`add_field_to_unsigned_callback`); `with_room_id` is
    /// false inside `/sync` rooms.
    pub async fn serve_events(
        &self,
        events: &[StoredEvent],
        viewer: &Requester,
        with_room_id: bool,
    ) -> Result<Vec<Value>, MatrixError> {
        let extras = self
            .storage
            .serving_extras(
                events
                    .iter()
                    .map(|e| (e.event_id.clone(), e.sender.clone()))
                    .collect(),
                &viewer.user_id,
            )
            .await?;
        let mut extras = extras;
        self.serve_events_with(events, &mut extras, viewer, with_room_id)
            .await
    }

    /// `serve_events` with the redactions and relations already read (a
    /// sync reads them in its one trip to a reader connection); an event
    /// missing from `extras` is served as neither redacted nor related.
    pub async fn serve_events_with(
        &self,
        events: &[StoredEvent],
        extras: &mut crate::storage::ServingExtras,
        viewer: &Requester,
        with_room_id: bool,
    ) -> Result<Vec<Value>, MatrixError> {
        let now = axon::time::now_ms();
        let unsigned_slot = &self.callbacks.add_extra_fields_to_unsigned_client_event;
        let crate::storage::ServingExtras {
            redactions,
            relations: summaries,
        } = extras;
        let device = Some((viewer.user_id.as_str(), viewer.device_id.as_str()));
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            // A redacted event is served as the room version's redaction
            // algorithm leaves it, with the redaction in `unsigned`.
            let pruned;
            let (event, because) = match redactions.remove(&event.event_id) {
                Some(redaction) => {
                    let version = self
                        .storage
                        .room_snapshot(&event.room_id)
                        .await?
                        .map(|room| room.room_version.clone())
                        .unwrap_or_default();
                    pruned = super::visibility::redacted(event.clone(), &version);
                    let because = crate::events::client_event(&redaction, device, true, now);
                    let because = serde_json::to_value(&because)
                        .map_err(|e| MatrixError::internal(e.to_string()))?;
                    (&pruned, Some(because))
                }
                None => (event, None),
            };
            let mut client = crate::events::client_event(event, device, with_room_id, now);
            client.unsigned.redacted_because = because;
            if !unsigned_slot.add_field_to_unsigned_callback.is_empty() {
                let mut extra = unsigned_slot
                    .add_field_to_unsigned_callback(&event.to_module_event())
                    .await?;
                // Modules cannot override the server's own unsigned fields.
                for own in [
                    "age",
                    "transaction_id",
                    "prev_content",
                    "redacted_because",
                    "m.relations",
                ] {
                    extra.remove(own);
                }
                client.unsigned.extra = extra;
            }
            if let Some(summary) = summaries.remove(&event.event_id) {
                let relations = relations_json(&summary, device, with_room_id, now)?;
                client
                    .unsigned
                    .extra
                    .insert("m.relations".into(), relations);
            }
            out.push(
                serde_json::to_value(&client).map_err(|e| MatrixError::internal(e.to_string()))?,
            );
        }
        Ok(out)
    }
}

/// `unsigned.m.relations`: the thread summary, the latest edit in full,
/// and the references, as the spec aggregates them.
fn relations_json(
    summary: &crate::storage::RelationSummary,
    viewer: Option<(&str, &str)>,
    with_room_id: bool,
    now: i64,
) -> Result<Value, MatrixError> {
    let client = |event: &StoredEvent| {
        serde_json::to_value(crate::events::client_event(
            event,
            viewer,
            with_room_id,
            now,
        ))
        .map_err(|e| MatrixError::internal(e.to_string()))
    };
    let mut relations = serde_json::Map::new();
    if let Some((count, latest, participated)) = &summary.thread {
        relations.insert(
            "m.thread".into(),
            serde_json::json!({
                "latest_event": client(latest)?,
                "count": count,
                "current_user_participated": participated,
            }),
        );
    }
    if let Some(edit) = &summary.latest_edit {
        relations.insert("m.replace".into(), client(edit)?);
    }
    if !summary.references.is_empty() {
        let chunk: Vec<Value> = summary
            .references
            .iter()
            .map(|id| serde_json::json!({ "event_id": id }))
            .collect();
        relations.insert("m.reference".into(), serde_json::json!({ "chunk": chunk }));
    }
    Ok(Value::Object(relations))
}
