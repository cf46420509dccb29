//! Rooms shared with other servers. A remote server is one more actor of
//! the same services: its events are checked as the spec's "checks on
//! receipt of a PDU" say (format, signatures, hashes, auth against the
//! event's auth events, then against the room's current state), go through
//! the modules' callbacks as Synapse fires them, and are stored as local
//! ones are; joins and invites cross over with `make_join`/`send_join` and
//! `invite`; local events leave through the durable outbound queue
//! ([`super::outbox`]).

use super::MatrixError;
use crate::events::{module_event, room_version_rules, Pdu, SUPPORTED_ROOM_VERSIONS};
use crate::homeserver::Homeserver;
use crate::storage::{NewEvent, NewRoom, Persisted, RoomSnapshot};
use axon::callbacks::{EventAllowed, SpamCheck};
use axon::{ErrCode, Membership};
use ruma::canonical_json::CanonicalJsonValue;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, OwnedServerName, RoomId, ServerName, UserId};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The servers other than `own` with a member joined in `snapshot`.
pub(crate) fn remote_servers(snapshot: &RoomSnapshot, own: &ServerName) -> Vec<OwnedServerName> {
    snapshot
        .joined_servers
        .keys()
        .filter(|s| *s != own)
        .cloned()
        .collect()
}

/// The ID of a PDU of a room whose version this server does not know: its
/// `event_id` (versions 1 and 2), else its reference hash as versions 3 to
/// 10 compute it (the best name an error can be filed under).
fn unversioned_event_id(value: &Value) -> String {
    if let Some(id) = value.get("event_id").and_then(Value::as_str) {
        return id.to_string();
    }
    let Value::Object(map) = value else {
        return String::new();
    };
    ruma::canonical_json::try_from_json_map(map.clone())
        .ok()
        .and_then(|object| {
            ruma::signatures::reference_hash(&object, &room_version_rules("10")).ok()
        })
        .map(|hash| format!("${hash}"))
        .unwrap_or_default()
}

/// A room version the other side cannot take part in, named in the error.
fn incompatible_version(version: &str) -> MatrixError {
    let mut error = MatrixError::new(
        400,
        ErrCode::IncompatibleRoomVersion,
        format!("Room version {version} is not supported by both servers"),
    );
    error
        .extra_fields
        .insert("room_version".into(), json!(version));
    error
}

/// What someone outside the room sees of it (invited, knocking), with
/// the membership of `member`.
fn stripped_room_state(snapshot: &RoomSnapshot, member: &str) -> Vec<Value> {
    snapshot
        .state
        .values()
        .filter(|e| crate::events::in_stripped_state(&e.event_type, e.state_key.as_deref(), member))
        .map(|e| json!({ "type": e.event_type, "state_key": e.state_key, "sender": e.sender, "content": e.content }))
        .collect()
}

/// The stripped state events of a list another server sent, the
/// malformed ones left out.
fn stripped_list(value: &Value) -> Vec<Value> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"].is_string() && e["state_key"].is_string() && e["content"].is_object())
        .cloned()
        .collect()
}

/// Stored PDUs (`(event ID, JSON)`) as JSON values, unreadable ones left out.
fn pdu_json(stored: Vec<(String, String)>) -> Vec<Value> {
    stored
        .iter()
        .filter_map(|(_, text)| serde_json::from_str(text).ok())
        .collect()
}

fn bad_request(message: impl Into<String>) -> MatrixError {
    MatrixError::new(400, ErrCode::BadJson, message)
}

/// The state events among `events`, by type and state key.
fn state_of<'a>(events: impl Iterator<Item = &'a Pdu>) -> HashMap<(String, String), Pdu> {
    events
        .filter_map(|e| {
            let key = e.state_key.clone()?;
            Some(((e.event_type.clone(), key), e.clone()))
        })
        .collect()
}

/// ruma's auth rules for `pdu` against the state `lookup` reads (only the
/// few entries the rules ask for are read).
fn check_against(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    lookup: impl Fn(&str, &str) -> Option<Pdu>,
) -> Result<(), String> {
    ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, |kind, key| {
        lookup(&kind.to_string(), key)
    })
}

/// Reads state out of `state`.
fn in_map(state: &HashMap<(String, String), Pdu>) -> impl Fn(&str, &str) -> Option<Pdu> + '_ {
    |kind, key| state.get(&(kind.to_string(), key.to_string())).cloned()
}

/// What became of a received PDU that passed the checks.
enum Received {
    /// Already stored.
    Known,
    /// A module dropped it (`should_drop_federated_event`).
    Dropped,
    /// Kept, not shown: the room's current state does not allow it, or
    /// `check_event_for_spam` denied it.
    SoftFailed(Pdu),
    /// To store, with the entries of the current state that resolving a
    /// fork settled.
    Accepted(Pdu, Vec<(String, String, OwnedEventId)>),
}

impl Homeserver {
    /// A request to another server, signed with this server's key.
    pub(crate) async fn ask_server(
        &self,
        destination: &ServerName,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, crate::federation::FederationError> {
        self.federation
            .send(&self.server_keys, destination, method, path_and_query, body)
            .await
    }

    /// `ask_server`, for a client waiting on the answer: no answer within
    /// `limit` is a failure (the client API's keys queries wait 10 s).
    pub(crate) async fn ask_server_within(
        &self,
        limit: std::time::Duration,
        destination: &ServerName,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, crate::federation::FederationError> {
        tokio::time::timeout(
            limit,
            self.ask_server(destination, method, path_and_query, body),
        )
        .await
        .unwrap_or_else(|_| {
            Err(crate::federation::FederationError::Unreachable(format!(
                "no answer within {} s",
                limit.as_secs()
            )))
        })
    }

    /// Checks the signatures a PDU needs (its sender's server, and in room
    /// versions 1 and 2 its event ID's) with keys fetched as needed, then
    /// its content hash: a PDU whose hash fails is redacted before use, as
    /// the spec says.
    pub(crate) async fn verify_pdu(&self, pdu: Pdu, room_version: &str) -> Result<Pdu, String> {
        let rules = room_version_rules(room_version);
        let servers = ruma::signatures::required_server_signatures_to_verify_event(
            &pdu.object,
            &rules.signatures,
        )
        .map_err(|e| e.to_string())?;
        let signatures = match pdu.object.get("signatures") {
            Some(CanonicalJsonValue::Object(map)) => map.clone(),
            _ => return Err("the PDU is not signed".into()),
        };
        let mut public_keys = ruma::signatures::PublicKeyMap::new();
        for server in servers {
            let wanted: Vec<String> = match signatures.get(server.as_str()) {
                Some(CanonicalJsonValue::Object(keys)) => keys.keys().cloned().collect(),
                _ => return Err(format!("the PDU is not signed by {server}")),
            };
            let keys = self
                .verify_keys_of(&server, &wanted, pdu.origin_server_ts)
                .await
                .map_err(|e| e.message.clone())?;
            if keys.is_empty() {
                return Err(format!("no key of {server} can verify the PDU"));
            }
            public_keys.extend(super::server_keys::public_key_map(server.as_str(), keys));
        }
        match ruma::signatures::verify_event(&public_keys, &pdu.object, &rules) {
            Ok(ruma::signatures::Verified::All) => Ok(pdu),
            Ok(ruma::signatures::Verified::Signatures) => {
                tracing::info!("{} fails its content hash: redacted", pdu.event_id);
                let redacted = ruma::canonical_json::redact(pdu.object, &rules.redaction, None)
                    .map_err(|e| e.to_string())?;
                let text = serde_json::to_string(&redacted).map_err(|e| e.to_string())?;
                Pdu::from_stored(&text, room_version)
            }
            Err(e) => Err(format!("bad signature: {e}")),
        }
    }

    /// The auth events a PDU names, from storage, else fetched from
    /// `origin` (checked, and kept as outliers).
    async fn auth_events_of(
        &self,
        origin: &ServerName,
        pdu: &Pdu,
        room_version: &str,
    ) -> Result<HashMap<OwnedEventId, Pdu>, String> {
        let ids: Vec<String> = pdu.auth_events.iter().map(|id| id.to_string()).collect();
        let stored = self.storage.pdus(ids).await.map_err(|e| e.to_string())?;
        let mut found = HashMap::new();
        for (_, text) in stored {
            let event = Pdu::from_stored(&text, room_version)?;
            found.insert(event.event_id.clone(), event);
        }
        let mut fetched = Vec::new();
        for id in &pdu.auth_events {
            if found.contains_key(id) {
                continue;
            }
            let event = self.fetch_event(origin, id, room_version).await?;
            fetched.push(event.to_new_event());
            found.insert(id.clone(), event);
        }
        if !fetched.is_empty() {
            self.storage
                .persist_outliers(fetched)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(found)
    }

    /// `GET /event/{id}` of `origin`, checked.
    async fn fetch_event(
        &self,
        origin: &ServerName,
        id: &ruma::EventId,
        room_version: &str,
    ) -> Result<Pdu, String> {
        let path = format!(
            "/_matrix/federation/v1/event/{}",
            super::percent_encode(id.as_str())
        );
        let answer = self
            .ask_server(origin, reqwest::Method::GET, &path, None)
            .await
            .map_err(|e| format!("cannot fetch {id} from {origin}: {e}"))?;
        let value = answer["pdus"]
            .get(0)
            .cloned()
            .ok_or_else(|| format!("{origin} sent no PDU for {id}"))?;
        let event = Pdu::parse(value, room_version)?;
        if event.event_id != *id {
            return Err(format!("{origin} sent {} for {id}", event.event_id));
        }
        self.verify_pdu(event, room_version).await
    }

    /// The checks on receipt of a PDU (format, signatures and hashes, auth
    /// against its auth events and against the state before it), then the
    /// modules, then the soft-fail checks: an event that the room's current
    /// state does not allow, or that `check_event_for_spam` denies, is kept
    /// but not shown (the spec's soft failure). An error is a rejection.
    async fn check_received_pdu(
        &self,
        origin: &ServerName,
        pdu: Pdu,
        room_version: &str,
        snapshot: &RoomSnapshot,
    ) -> Result<Received, String> {
        let rules = room_version_rules(room_version);
        if self
            .storage
            .pdus(vec![pdu.event_id.to_string()])
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .is_some()
        {
            return Ok(Received::Known);
        }
        let pdu = self.verify_pdu(pdu, room_version).await?;
        let auth_events = self.auth_events_of(origin, &pdu, room_version).await?;
        ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |id| {
            auth_events.get(id).cloned()
        })?;
        check_against(&rules, &pdu, in_map(&state_of(auth_events.values())))?;
        let current = |kind: &str, key: &str| {
            snapshot
                .state
                .get(&(kind.to_string(), key.to_string()))
                .map(Pdu::of_state)
        };
        let fork = self.state_before_fork(&pdu, snapshot).await?;
        match &fork {
            Some(before) => check_against(&rules, &pdu, in_map(before))
                .map_err(|e| format!("not allowed by the state before it: {e}"))?,
            None => check_against(&rules, &pdu, current)
                .map_err(|e| format!("not allowed by the room's state: {e}"))?,
        }
        let event = module_event(&pdu.to_new_event()).map_err(|e| e.message.clone())?;
        let modules = &self.callbacks;
        if modules
            .spam_checker
            .should_drop_federated_event(&event)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(Received::Dropped);
        }
        if !modules.third_party_rules.check_event_allowed.is_empty() {
            match modules
                .third_party_rules
                .check_event_allowed(&event, &snapshot.state)
                .await
                .map_err(|e| e.to_string())?
            {
                EventAllowed::Allow => {}
                // Another server's event cannot be rewritten here.
                EventAllowed::Deny | EventAllowed::Replace(_) => {
                    return Err("This event is not allowed in this context".into())
                }
            }
        }
        if fork.is_some() && check_against(&rules, &pdu, current).is_err() {
            return Ok(Received::SoftFailed(pdu));
        }
        if let SpamCheck::Deny { .. } = modules
            .spam_checker
            .check_event_for_spam(&event)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(Received::SoftFailed(pdu));
        }
        let resolved_state = match &fork {
            Some(before) => self.resolve_fork(&pdu, before, snapshot).await?,
            None => Vec::new(),
        };
        Ok(Received::Accepted(pdu, resolved_state))
    }

    /// Keeps a soft-failed event as known only: other events may name it,
    /// but it is in no timeline and no state.
    async fn keep_soft_failed(&self, pdu: &Pdu) -> Result<(), String> {
        tracing::info!("{} from {} soft-failed", pdu.event_id, pdu.sender);
        self.storage
            .keep_soft_failed(pdu.to_new_event())
            .await
            .map_err(|e| e.to_string())
    }

    /// Stores a checked PDU of another server in the room's timeline, with
    /// the local members' notifications, then `on_new_event`.
    async fn store_received(
        &self,
        snapshot: &RoomSnapshot,
        pdu: &Pdu,
        destinations: Vec<OwnedServerName>,
        resolved_state: Vec<(String, String, OwnedEventId)>,
    ) -> Result<(), MatrixError> {
        let mut new: NewEvent = pdu.to_new_event();
        new.resolved_state = resolved_state;
        new.notifies = self.notifications_for(snapshot, &new).await?;
        new.destinations = destinations;
        let pushed: Vec<ruma::OwnedUserId> =
            new.notifies.iter().map(|n| n.user_id.clone()).collect();
        let work = self.new_event_work(snapshot, std::slice::from_ref(&new));
        let persisted = self.storage.persist_events(None, vec![new], None).await?;
        if let Some(Persisted::New { .. }) = persisted.first() {
            self.announce_new_events(work);
            let pushed: Vec<&UserId> = pushed.iter().map(|u| u.as_ref()).collect();
            self.pushers.wake(&pushed);
        }
        Ok(())
    }

    /// `PUT /send/{txnId}`: each PDU checked and stored on its own (one
    /// that fails gets its error in the answer and fails no other), EDUs
    /// applied. More than 50 PDUs or 100 EDUs is a 400.
    pub async fn receive_transaction(
        &self,
        origin: &ServerName,
        mut body: Value,
    ) -> Result<Value, MatrixError> {
        let mut list = |field: &str| match body.get_mut(field).map(Value::take) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(bad_request(format!("`{field}` must be a list"))),
        };
        let pdus = list("pdus")?;
        let edus = list("edus")?;
        if pdus.len() > crate::storage::MAX_PDUS_PER_TXN
            || edus.len() > crate::storage::MAX_EDUS_PER_TXN
        {
            return Err(bad_request(
                "A transaction holds at most 50 PDUs and 100 EDUs",
            ));
        }
        let mut results = Map::new();
        for value in pdus {
            let (id, outcome) = self.receive_pdu(origin, value).await;
            let answer = match outcome {
                Ok(()) => json!({}),
                Err(error) => {
                    tracing::info!("PDU {id} from {origin} refused: {error}");
                    json!({ "error": error })
                }
            };
            results.insert(id, answer);
        }
        for edu in edus {
            self.receive_edu(origin, edu).await;
        }
        Ok(json!({ "pdus": results }))
    }

    /// One PDU of a transaction: its event ID (as well as it can be named)
    /// and what became of it.
    async fn receive_pdu(&self, origin: &ServerName, value: Value) -> (String, Result<(), String>) {
        let room = value
            .get("room_id")
            .and_then(Value::as_str)
            .and_then(|r| ruma::OwnedRoomId::try_from(r).ok());
        let Some(room) = room else {
            return (
                unversioned_event_id(&value),
                Err("the PDU has no valid room_id".into()),
            );
        };
        let version = match self.storage.room_version(&room).await {
            Ok(Some(version)) => version,
            Ok(None) => {
                return (
                    unversioned_event_id(&value),
                    Err(format!("this server is not in {room}")),
                )
            }
            Err(e) => return (String::new(), Err(e.to_string())),
        };
        let pdu = match Pdu::parse(value, &version) {
            Ok(pdu) => pdu,
            Err(e) => return (String::new(), Err(e)),
        };
        let id = pdu.event_id.to_string();
        (id, self.accept_pdu(origin, pdu, &version).await)
    }

    /// Checks and stores a PDU of a room this server is in, fetching the
    /// events it follows that are missing (`get_missing_events`) first.
    async fn accept_pdu(&self, origin: &ServerName, pdu: Pdu, version: &str) -> Result<(), String> {
        self.fill_gap(origin, &pdu, version).await;
        self.check_and_store(origin, pdu, version).await
    }

    /// The checks on receipt against the room as it is now, then the
    /// event into its timeline.
    async fn check_and_store(
        &self,
        origin: &ServerName,
        pdu: Pdu,
        version: &str,
    ) -> Result<(), String> {
        let snapshot = self
            .storage
            .room_snapshot(&pdu.room_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("unknown room")?;
        match self
            .check_received_pdu(origin, pdu, version, &snapshot)
            .await?
        {
            Received::Known | Received::Dropped => Ok(()),
            Received::SoftFailed(pdu) => self.keep_soft_failed(&pdu).await,
            Received::Accepted(pdu, resolved) => self
                .store_received(&snapshot, &pdu, Vec::new(), resolved)
                .await
                .map_err(|e| e.message.clone()),
        }
    }

    /// When a PDU follows events this server does not have, asks `origin`
    /// for them (`get_missing_events`, up to 20) and accepts them oldest
    /// first; what cannot be had is left (the PDU is then checked against
    /// the current state).
    async fn fill_gap(&self, origin: &ServerName, pdu: &Pdu, version: &str) {
        let prevs: Vec<String> = pdu.prev_events.iter().map(|id| id.to_string()).collect();
        let known = match self.storage.pdus(prevs.clone()).await {
            Ok(known) => known,
            Err(_) => return,
        };
        if known.len() == prevs.len() {
            return;
        }
        let Ok(Some(snapshot)) = self.storage.room_snapshot(&pdu.room_id).await else {
            return;
        };
        let path = format!(
            "/_matrix/federation/v1/get_missing_events/{}",
            super::percent_encode(pdu.room_id.as_str())
        );
        let body = json!({
            "earliest_events": snapshot.extremities,
            "latest_events": [pdu.event_id],
            "limit": 20,
            "min_depth": 0,
        });
        let answer = match self
            .ask_server(origin, reqwest::Method::POST, &path, Some(&body))
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::info!("get_missing_events from {origin}: {e}");
                return;
            }
        };
        let mut missing: Vec<Pdu> = answer["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Pdu::parse(v.clone(), version).ok())
            .filter(|e| e.room_id == pdu.room_id)
            .collect();
        missing.sort_by_key(|e| e.depth);
        for event in missing {
            let id = event.event_id.clone();
            if let Err(e) = self.check_and_store(origin, event, version).await {
                tracing::info!("missing event {id} refused: {e}");
            }
        }
    }

    /// `GET /make_join|make_leave|make_knock/{room}/{user}`: the membership
    /// event for a user of `origin` to sign, if the room would allow it and,
    /// for joins and knocks, its version is one their server supports
    /// (`ver`; a join without `ver` means version 1, as the spec says).
    pub async fn make_membership(
        &self,
        origin: &ServerName,
        room: &RoomId,
        user: &UserId,
        membership: Membership,
        supported: &[String],
    ) -> Result<Value, MatrixError> {
        if user.server_name() != origin {
            return Err(MatrixError::forbidden(format!(
                "{origin} cannot make a {membership} for {user}"
            )));
        }
        let snapshot = self.resident_snapshot(room).await?;
        let version = snapshot.room_version.clone();
        if membership != Membership::Leave {
            let supports = if supported.is_empty() {
                version == "1"
            } else {
                supported.contains(&version)
            };
            if !supports {
                return Err(incompatible_version(&version));
            }
        }
        if membership == Membership::Knock && !room_version_rules(&version).authorization.knocking {
            return Err(MatrixError::forbidden(format!(
                "Room version {version} does not support knocking"
            )));
        }
        let draft = crate::events::EventDraft {
            sender: user.to_owned(),
            event_type: "m.room.member".into(),
            state_key: Some(user.to_string()),
            content: serde_json::from_value(json!({ "membership": membership }))
                .unwrap_or_default(),
        };
        crate::events::check_auth(&snapshot, &draft)?;
        let template = self.event_template(&snapshot, &draft).await?;
        Ok(json!({ "room_version": version, "event": template }))
    }

    /// A room this server is in, for another server's join, leave or knock.
    async fn resident_snapshot(&self, room: &RoomId) -> Result<Arc<RoomSnapshot>, MatrixError> {
        self.storage
            .room_snapshot(room)
            .await?
            .filter(|s| self.is_resident(s))
            .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "Unknown room"))
    }

    /// A remote user's own membership event, as `send_join`, `send_leave`
    /// and `send_knock` take it: for the room and event of the URL, sent by
    /// `origin` for its own user, with the membership of the endpoint; then
    /// checked on receipt and stored, and sent on to the room's other
    /// servers. `None` when it was already stored or a module dropped it.
    async fn receive_own_membership(
        &self,
        origin: &ServerName,
        snapshot: &RoomSnapshot,
        event_id: &ruma::EventId,
        body: Value,
        membership: Membership,
    ) -> Result<Option<Pdu>, MatrixError> {
        let pdu = Pdu::parse(body, &snapshot.room_version).map_err(bad_request)?;
        if pdu.event_id != event_id || pdu.room_id != snapshot.room_id {
            return Err(bad_request("The event does not match the URL"));
        }
        let is_own = pdu.event_type == "m.room.member"
            && pdu.state_key.as_deref() == Some(pdu.sender.as_str())
            && pdu.membership().as_deref() == Some(membership.as_str());
        if !is_own {
            return Err(bad_request(format!(
                "send_{membership} takes a user's own {membership}"
            )));
        }
        if pdu.sender.server_name() != origin {
            return Err(MatrixError::forbidden(format!(
                "{origin} cannot send a {membership} for {}",
                pdu.sender
            )));
        }
        let received = self
            .check_received_pdu(origin, pdu, &snapshot.room_version, snapshot)
            .await
            .map_err(MatrixError::forbidden)?;
        let pdu = match received {
            Received::Known | Received::Dropped => None,
            // The resident server decides here: what it would hide, it refuses.
            Received::SoftFailed(_) => {
                return Err(MatrixError::forbidden(
                    "This event has been rejected as probable spam",
                ))
            }
            Received::Accepted(pdu, resolved) => {
                // The other servers hear of it from this one.
                let destinations = remote_servers(snapshot, &self.server_name)
                    .into_iter()
                    .filter(|s| s != origin)
                    .collect();
                self.store_received(snapshot, &pdu, destinations, resolved)
                    .await?;
                Some(pdu)
            }
        };
        Ok(pdu)
    }

    /// `PUT /v2/send_leave/{room}/{event}` (a remote user's leave, the
    /// rejection of an invite or the withdrawal of a knock; answered `{}`)
    /// and `PUT /v1/send_knock/{room}/{event}` (a knock; answered with what
    /// the knocker may see of the room, its stripped state).
    pub async fn send_leave_or_knock(
        &self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &ruma::EventId,
        body: Value,
        membership: Membership,
    ) -> Result<Value, MatrixError> {
        let snapshot = self.resident_snapshot(room).await?;
        let stored = self
            .receive_own_membership(origin, &snapshot, event_id, body, membership)
            .await?;
        if membership != Membership::Knock {
            return Ok(json!({}));
        }
        let knocker = stored.map(|k| k.sender.to_string()).unwrap_or_default();
        Ok(json!({ "knock_room_state": stripped_room_state(&snapshot, &knocker) }))
    }

    /// The unsigned event another server completes and signs: what
    /// `build_event` writes, without hashes and signatures.
    async fn event_template(
        &self,
        snapshot: &RoomSnapshot,
        draft: &crate::events::EventDraft,
    ) -> Result<Value, MatrixError> {
        let (built, _) = self.build_now(snapshot, draft).await?;
        let mut template = built.pdu;
        template.remove("hashes");
        template.remove("signatures");
        if !crate::events::references_with_hashes(&snapshot.room_version) {
            template.remove("event_id");
        }
        template.insert("origin".into(), json!(draft.sender.server_name()));
        Ok(Value::Object(template))
    }

    /// `PUT /v2/send_join/{room}/{event}`: a remote user's join, signed by
    /// their server, checked and stored; the answer is the room's state
    /// before it and the auth chain, as PDUs. The join then goes to the
    /// other servers in the room.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &ruma::EventId,
        body: Value,
    ) -> Result<Value, MatrixError> {
        let snapshot = self.resident_snapshot(room).await?;
        let others = remote_servers(&snapshot, &self.server_name);
        let state_before: Vec<String> = snapshot
            .state
            .values()
            .map(|e| e.event_id.to_string())
            .collect();
        self.receive_own_membership(origin, &snapshot, event_id, body, Membership::Join)
            .await?;
        let state = self.pdu_values(state_before.clone()).await?;
        let auth_chain = pdu_json(
            self.storage
                .auth_chain(
                    state_before
                        .into_iter()
                        .chain([event_id.to_string()])
                        .collect(),
                )
                .await?,
        );
        let event = self
            .pdu_values(vec![event_id.to_string()])
            .await?
            .pop()
            .unwrap_or(Value::Null);
        let mut servers: Vec<String> = others.iter().map(|s| s.to_string()).collect();
        servers.push(self.server_name.to_string());
        Ok(json!({
            "origin": self.server_name,
            "state": state,
            "auth_chain": auth_chain,
            "event": event,
            "members_omitted": false,
            "servers_in_room": servers,
        }))
    }

    /// A local user's join of a room this server is not in, through one of
    /// `servers` that is: `make_join`, sign, `send_join`, then the room's
    /// state and auth chain are checked and stored and the join becomes
    /// the first event of its timeline here.
    pub(crate) async fn join_remote_room(
        &self,
        user: &UserId,
        room: &RoomId,
        servers: &[OwnedServerName],
        content: Map<String, Value>,
    ) -> Result<OwnedEventId, MatrixError> {
        let mut last_error = MatrixError::new(404, ErrCode::NotFound, "No known servers");
        for server in servers.iter().filter(|s| **s != self.server_name) {
            match self.join_through(user, room, server, content.clone()).await {
                Ok(id) => return Ok(id),
                Err(e) => {
                    tracing::info!("joining {room} through {server}: {}", e.message);
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// `send_membership_through` each of `servers` but this one, in order,
    /// until one answers (a leave or a knock); the last failure otherwise.
    async fn send_membership_each(
        &self,
        servers: &[OwnedServerName],
        room: &RoomId,
        user: &UserId,
        membership: Membership,
        content: Map<String, Value>,
    ) -> Result<(String, Pdu, Value), MatrixError> {
        let mut last_error = MatrixError::new(404, ErrCode::NotFound, "No known servers");
        for server in servers.iter().filter(|s| **s != self.server_name) {
            match self
                .send_membership_through(server, room, user, membership, content.clone())
                .await
            {
                Ok(sent) => return Ok(sent),
                Err(e) => {
                    tracing::info!("{membership} of {room} through {server}: {}", e.message);
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn join_through(
        &self,
        user: &UserId,
        room: &RoomId,
        server: &ServerName,
        content: Map<String, Value>,
    ) -> Result<OwnedEventId, MatrixError> {
        let (version, join, answer) = self
            .send_membership_through(server, room, user, Membership::Join, content)
            .await?;
        // The resident server may have countersigned it (restricted rooms).
        let join = match answer.get("event").filter(|e| e.is_object()) {
            Some(event) => {
                let countersigned = Pdu::parse(event.clone(), &version)
                    .map_err(|e| MatrixError::new(502, ErrCode::Unknown, e))?;
                if countersigned.event_id != join.event_id {
                    return Err(MatrixError::new(
                        502,
                        ErrCode::Unknown,
                        "send_join sent another event",
                    ));
                }
                countersigned
            }
            None => join,
        };
        self.adopt_room_state(server, room, &version, &answer, &join)
            .await?;
        Ok(join.event_id)
    }

    /// `make_join`, `make_leave` or `make_knock` on `server`, and the
    /// event it answers completed with `content` and signed here: the
    /// room's version, the event as JSON and as a PDU.
    async fn make_membership_through(
        &self,
        server: &ServerName,
        room: &RoomId,
        user: &UserId,
        membership: Membership,
        content: Map<String, Value>,
    ) -> Result<(String, Value, Pdu), MatrixError> {
        let versions: String = SUPPORTED_ROOM_VERSIONS
            .iter()
            .map(|v| format!("ver={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let path = format!(
            "/_matrix/federation/v1/make_{membership}/{}/{}?{versions}",
            super::percent_encode(room.as_str()),
            super::percent_encode(user.as_str())
        );
        let answer = self
            .ask_server(server, reqwest::Method::GET, &path, None)
            .await
            .map_err(|e| super::federation_failure(e, &format!("Failed to make_{membership}")))?;
        let version = answer["room_version"].as_str().unwrap_or("1").to_string();
        if !SUPPORTED_ROOM_VERSIONS.contains(&version.as_str()) {
            return Err(MatrixError::new(
                400,
                ErrCode::UnsupportedRoomVersion,
                format!("Room version {version} is not supported by this server"),
            ));
        }
        let rules = room_version_rules(&version);
        let Some(Value::Object(mut event)) = answer.get("event").cloned() else {
            return Err(MatrixError::new(
                502,
                ErrCode::Unknown,
                format!("make_{membership} sent no event"),
            ));
        };
        let is_own = event.get("type").and_then(Value::as_str) == Some("m.room.member")
            && event.get("state_key").and_then(Value::as_str) == Some(user.as_str())
            && event.get("sender").and_then(Value::as_str) == Some(user.as_str());
        if !is_own {
            return Err(MatrixError::new(
                502,
                ErrCode::Unknown,
                format!("make_{membership} sent another event"),
            ));
        }
        let mut own_content = content;
        own_content.insert("membership".into(), json!(membership));
        if let Some(voucher) = event
            .get("content")
            .and_then(|c| c.get("join_authorised_via_users_server"))
        {
            own_content.insert("join_authorised_via_users_server".into(), voucher.clone());
        }
        event.insert("content".into(), Value::Object(own_content));
        event.insert("origin".into(), json!(self.server_name));
        event.insert("origin_server_ts".into(), json!(axon::time::now_ms()));
        event.remove("hashes");
        event.remove("signatures");
        event.remove("unsigned");
        if rules.event_id_format == ruma::room_version_rules::EventIdFormatVersion::V1 {
            let id = format!("${}:{}", super::random_string(18), self.server_name);
            event.insert("event_id".into(), json!(id));
        }
        let mut object = ruma::canonical_json::try_from_json_map(event).map_err(|e| {
            MatrixError::new(502, ErrCode::Unknown, format!("make_{membership}: {e}"))
        })?;
        self.server_keys.hash_and_sign_event(&mut object, &rules)?;
        let signed =
            serde_json::to_value(&object).map_err(|e| MatrixError::internal(e.to_string()))?;
        let pdu = Pdu::parse(signed.clone(), &version).map_err(MatrixError::internal)?;
        Ok((version, signed, pdu))
    }

    /// `make_membership_through`, then the signed event sent back
    /// (`send_join` v2, `send_leave` v2, `send_knock`): the room's
    /// version, the event, and what the resident server answered.
    async fn send_membership_through(
        &self,
        server: &ServerName,
        room: &RoomId,
        user: &UserId,
        membership: Membership,
        content: Map<String, Value>,
    ) -> Result<(String, Pdu, Value), MatrixError> {
        let (version, signed, event) = self
            .make_membership_through(server, room, user, membership, content)
            .await?;
        let api = if membership == Membership::Knock {
            "v1"
        } else {
            "v2"
        };
        let path = format!(
            "/_matrix/federation/{api}/send_{membership}/{}/{}",
            super::percent_encode(room.as_str()),
            super::percent_encode(event.event_id.as_str())
        );
        let answer = self
            .ask_server(server, reqwest::Method::PUT, &path, Some(&signed))
            .await
            .map_err(|e| super::federation_failure(e, &format!("Failed to send_{membership}")))?;
        Ok((version, event, answer))
    }

    /// A local user's leave of a room this server is not in (an invite
    /// rejected, a knock withdrawn): `make_leave`/`send_leave` through the
    /// server that invited them or `servers`; when none answers, the invite
    /// is rejected here only, as Synapse does, so that it does not stay.
    pub(crate) async fn leave_remote_room(
        &self,
        user: &UserId,
        room: &RoomId,
        servers: &[OwnedServerName],
        content: Map<String, Value>,
    ) -> Result<OwnedEventId, MatrixError> {
        let sent = self
            .send_membership_each(servers, room, user, Membership::Leave, content.clone())
            .await;
        if let Ok((version, leave, _)) = sent {
            self.store_outside_membership(&leave, &version, Vec::new())
                .await?;
            return Ok(leave.event_id);
        }
        let snapshot =
            self.storage.room_snapshot(room).await?.ok_or_else(|| {
                MatrixError::new(404, ErrCode::NotFound, "Not invited to this room")
            })?;
        let mut content = content;
        content.insert("membership".into(), json!(Membership::Leave));
        let draft = crate::events::EventDraft {
            sender: user.to_owned(),
            event_type: "m.room.member".into(),
            state_key: Some(user.to_string()),
            content,
        };
        let (built, _) = self.build_now(&snapshot, &draft).await?;
        let leave = Pdu::parse(Value::Object(built.pdu), &snapshot.room_version)
            .map_err(MatrixError::internal)?;
        self.store_outside_membership(&leave, &snapshot.room_version, Vec::new())
            .await?;
        Ok(leave.event_id)
    }

    /// A local user's knock on a room this server is not in, through one
    /// of `servers`: `make_knock`/`send_knock`; the room's stripped state
    /// it answers is what their sync shows of the room.
    pub(crate) async fn knock_remote_room(
        &self,
        user: &UserId,
        room: &RoomId,
        servers: &[OwnedServerName],
        content: Map<String, Value>,
    ) -> Result<OwnedEventId, MatrixError> {
        let (version, knock, answer) = self
            .send_membership_each(servers, room, user, Membership::Knock, content)
            .await?;
        let stripped = stripped_list(&answer["knock_room_state"]);
        self.store_outside_membership(&knock, &version, stripped)
            .await?;
        Ok(knock.event_id)
    }

    /// Stores a local user's membership of a room this server is not in
    /// (an invite received, a knock or a leave sent), with what another
    /// server showed of the room (`stripped`, kept for the user's sync).
    async fn store_outside_membership(
        &self,
        event: &Pdu,
        version: &str,
        stripped: Vec<Value>,
    ) -> Result<(), MatrixError> {
        let new_room = NewRoom {
            room_id: event.room_id.clone(),
            room_version: version.to_string(),
            creator: event.sender.clone(),
            is_public: false,
            created_ts: event.origin_server_ts,
        };
        let new = event.to_new_event();
        self.storage
            .persist_outside_membership(new_room, new.clone(), stripped)
            .await?;
        // `on_new_event` sees it with the room as this server knows it.
        if !self.callbacks.third_party_rules.on_new_event.is_empty() {
            if let Some(snapshot) = self.storage.room_snapshot(&event.room_id).await? {
                let event = module_event(&new)?;
                self.announce_new_events(Some(vec![(event, snapshot.state.clone())]));
            }
        }
        Ok(())
    }

    /// Stores the state and auth chain of a room joined through `server`:
    /// each event's signatures and hashes checked, the state's events
    /// authorised by ruma's rules against their auth events; then the room
    /// exists here with that state, and `join` starts its timeline.
    async fn adopt_room_state(
        &self,
        server: &ServerName,
        room: &RoomId,
        version: &str,
        answer: &Value,
        join: &Pdu,
    ) -> Result<(), MatrixError> {
        let rules = room_version_rules(version);
        let bad = |m: String| {
            MatrixError::new(
                502,
                ErrCode::Unknown,
                format!("send_join from {server}: {m}"),
            )
        };
        let mut events: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut state_ids = Vec::new();
        for (list, is_state) in [("auth_chain", false), ("state", true)] {
            for value in answer[list].as_array().into_iter().flatten() {
                let pdu = Pdu::parse(value.clone(), version).map_err(bad)?;
                if pdu.room_id != room {
                    return Err(bad(format!("{} is of another room", pdu.event_id)));
                }
                if is_state {
                    state_ids.push(pdu.event_id.clone());
                }
                if events.contains_key(&pdu.event_id) {
                    continue;
                }
                let pdu = self.verify_pdu(pdu, version).await.map_err(bad)?;
                events.insert(pdu.event_id.clone(), pdu);
            }
        }
        for id in &state_ids {
            let pdu = &events[id];
            let auth: Vec<&Pdu> = pdu
                .auth_events
                .iter()
                .filter_map(|a| events.get(a))
                .collect();
            ruma::state_res::check_state_independent_auth_rules(&rules.authorization, pdu, |id| {
                events.get(id).cloned()
            })
            .map_err(|e| bad(format!("{id}: {e}")))?;
            check_against(&rules, pdu, in_map(&state_of(auth.into_iter())))
                .map_err(|e| bad(format!("{id}: {e}")))?;
        }
        let create = state_ids
            .iter()
            .map(|id| &events[id])
            .find(|e| e.event_type == "m.room.create")
            .ok_or_else(|| bad("the state has no m.room.create".into()))?;
        let new_room = NewRoom {
            room_id: room.to_owned(),
            room_version: version.to_string(),
            creator: create.sender.clone(),
            is_public: false,
            created_ts: create.origin_server_ts,
        };
        let state: Vec<NewEvent> = state_ids
            .iter()
            .map(|id| events[id].to_new_event())
            .collect();
        let outliers: Vec<NewEvent> = events
            .values()
            .filter(|e| !state_ids.contains(&e.event_id))
            .map(Pdu::to_new_event)
            .collect();
        self.storage
            .persist_room_state(new_room, state, outliers)
            .await?;
        let snapshot = self
            .storage
            .room_snapshot(room)
            .await?
            .ok_or_else(|| MatrixError::internal("the joined room was not stored"))?;
        self.backfill_from(server, room, version, &join.prev_events, 50)
            .await;
        // The join's parents are the resident server's latest events, which
        // this server has only as state or history: the join starts the
        // timeline here.
        self.store_received(&snapshot, join, Vec::new(), Vec::new())
            .await
    }

    /// An invite of a user of another server: their server must accept it
    /// (`PUT /v2/invite`), and countersigns it; the countersigned event is
    /// what is stored. Their server's refusal reaches the inviter as it is.
    pub(crate) async fn invite_remote(
        &self,
        snapshot: &RoomSnapshot,
        mut built: crate::events::BuiltEvent,
    ) -> Result<crate::events::BuiltEvent, MatrixError> {
        let target = built
            .new
            .state_key
            .as_deref()
            .and_then(|k| UserId::parse(k).ok())
            .ok_or_else(|| MatrixError::internal("an invite names its target"))?;
        let server = target.server_name().to_owned();
        let body = json!({
            "event": built.pdu,
            "room_version": snapshot.room_version,
            "invite_room_state": stripped_room_state(snapshot, built.new.sender.as_str()),
        });
        let path = format!(
            "/_matrix/federation/v2/invite/{}/{}",
            super::percent_encode(snapshot.room_id.as_str()),
            super::percent_encode(built.new.event_id.as_str())
        );
        let answer = self
            .ask_server(&server, reqwest::Method::PUT, &path, Some(&body))
            .await
            .map_err(|e| super::federation_failure(e, "Failed to invite the user"))?;
        let returned = answer.get("event").cloned().ok_or_else(|| {
            MatrixError::new(502, ErrCode::Unknown, "The invite was not returned")
        })?;
        let pdu = Pdu::parse(returned, &snapshot.room_version)
            .map_err(|e| MatrixError::new(502, ErrCode::Unknown, e))?;
        if pdu.event_id != built.new.event_id {
            return Err(MatrixError::new(
                502,
                ErrCode::Unknown,
                format!("{server} changed the invite"),
            ));
        }
        let pdu = self
            .verify_pdu(pdu, &snapshot.room_version)
            .await
            .map_err(|e| MatrixError::new(502, ErrCode::Unknown, e))?;
        built.new.pdu = pdu.json();
        Ok(built)
    }

    /// `PUT /v2/invite/{room}/{event}`: another server invites a local
    /// user. `federated_user_may_invite`, then `user_may_invite`, may
    /// refuse it; else it is countersigned, stored, and shown in the
    /// user's sync.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &ruma::EventId,
        body: Value,
    ) -> Result<Value, MatrixError> {
        let version = body["room_version"].as_str().unwrap_or("1").to_string();
        if !SUPPORTED_ROOM_VERSIONS.contains(&version.as_str()) {
            return Err(incompatible_version(&version));
        }
        let pdu = Pdu::parse(body["event"].clone(), &version).map_err(bad_request)?;
        if pdu.event_id != event_id || pdu.room_id != room {
            return Err(bad_request("The event does not match the URL"));
        }
        if pdu.event_type != "m.room.member" || pdu.membership().as_deref() != Some("invite") {
            return Err(bad_request("The event is not an invite"));
        }
        if pdu.sender.server_name() != origin {
            return Err(MatrixError::forbidden(format!(
                "{origin} cannot invite for {}",
                pdu.sender
            )));
        }
        let target = pdu
            .state_key
            .as_deref()
            .and_then(|k| UserId::parse(k).ok())
            .filter(|u| u.server_name() == self.server_name)
            .ok_or_else(|| bad_request("The invite is not for a user of this server"))?;
        if self.storage.get_user(&target).await?.is_none() {
            return Err(MatrixError::new(
                404,
                ErrCode::NotFound,
                format!("Unknown user {target}"),
            ));
        }
        let pdu = self
            .verify_pdu(pdu, &version)
            .await
            .map_err(MatrixError::forbidden)?;
        let event = module_event(&pdu.to_new_event())?;
        let spam = &self.callbacks.spam_checker;
        super::refused(
            spam.federated_user_may_invite(&event).await?,
            "You are not permitted to invite this user",
        )?;
        super::refused(
            spam.user_may_invite(&pdu.sender, &target, room).await?,
            "You are not permitted to invite this user",
        )?;
        let rules = room_version_rules(&version);
        let mut object = pdu.object.clone();
        self.server_keys.hash_and_sign_event(&mut object, &rules)?;
        let text =
            serde_json::to_string(&object).map_err(|e| MatrixError::internal(e.to_string()))?;
        let signed = Pdu::from_stored(&text, &version).map_err(MatrixError::internal)?;
        let known = self.storage.room_snapshot(room).await?;
        match known.filter(|s| self.is_resident(s)) {
            // Already in the room: the invite is one more event of it.
            Some(snapshot) => {
                self.store_received(&snapshot, &signed, Vec::new(), Vec::new())
                    .await?
            }
            None => {
                let mut given = stripped_list(&body["invite_room_state"]);
                if given.is_empty() {
                    given = stripped_list(&body["event"]["unsigned"]["invite_room_state"]);
                }
                self.store_outside_membership(&signed, &version, given)
                    .await?
            }
        }
        Ok(json!({ "event": serde_json::from_str::<Value>(&text).unwrap_or_default() }))
    }

    /// Whether a member of this server is joined to the room, so that its
    /// state here is the room's.
    pub(crate) fn is_resident(&self, snapshot: &RoomSnapshot) -> bool {
        snapshot.joined_servers.contains_key(&self.server_name)
    }

    /// The servers a new local event goes to: those with members joined,
    /// and the server of a remote user it kicks or bans.
    pub(crate) fn destinations_for(
        &self,
        snapshot: &RoomSnapshot,
        new: &NewEvent,
    ) -> Vec<OwnedServerName> {
        let mut servers = remote_servers(snapshot, &self.server_name);
        if new.event_type == "m.room.member" {
            let target = new.state_key.as_deref().and_then(|k| UserId::parse(k).ok());
            let invite = serde_json::from_str::<Value>(&new.content)
                .is_ok_and(|c| c["membership"] == "invite");
            if let Some(target) = target.filter(|t| t.server_name() != self.server_name && !invite)
            {
                if !servers.iter().any(|s| s == target.server_name()) {
                    servers.push(target.server_name().to_owned());
                }
            }
        }
        servers
    }

    /// Whether `origin` may read the room's events: it has a member there
    /// (joined, invited or once joined).
    async fn check_server_in_room(
        &self,
        origin: &ServerName,
        room: &RoomId,
    ) -> Result<(), MatrixError> {
        let snapshot = self
            .storage
            .room_snapshot(room)
            .await?
            .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "Unknown room"))?;
        let present = snapshot.joined_servers.contains_key(origin)
            || snapshot.state.of_type("m.room.member").any(|m| {
                m.state_key
                    .as_deref()
                    .and_then(|k| UserId::parse(k).ok())
                    .is_some_and(|u| u.server_name() == origin)
            });
        if !present {
            return Err(MatrixError::forbidden(format!(
                "{origin} is not in room {room}"
            )));
        }
        Ok(())
    }

    /// `GET /event/{id}`: one event, as a transaction of one PDU.
    pub async fn serve_event(
        &self,
        origin: &ServerName,
        id: &ruma::EventId,
    ) -> Result<Value, MatrixError> {
        let event = self
            .storage
            .get_event(id)
            .await?
            .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "Event not found"))?;
        self.check_server_in_room(origin, &event.room_id).await?;
        let pdus = self.pdu_values(vec![id.to_string()]).await?;
        Ok(json!({
            "origin": self.server_name,
            "origin_server_ts": axon::time::now_ms(),
            "pdus": pdus,
        }))
    }

    async fn pdu_values(&self, ids: Vec<String>) -> Result<Vec<Value>, MatrixError> {
        Ok(pdu_json(self.storage.pdus(ids).await?))
    }

    /// An event of `room` that `origin`, a server with members there, asks
    /// about (404 if the room has no such event).
    async fn room_event_for(
        &self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &ruma::EventId,
    ) -> Result<crate::storage::StoredEvent, MatrixError> {
        self.check_server_in_room(origin, room).await?;
        self.storage
            .get_event(event_id)
            .await?
            .filter(|e| e.room_id == room)
            .ok_or_else(|| MatrixError::new(404, ErrCode::NotFound, "Event not found in the room"))
    }

    /// `POST /get_missing_events/{room}`: the events before `latest` back
    /// to `earliest`, newest first found, at most `limit` (capped at 20).
    pub async fn missing_events(
        &self,
        origin: &ServerName,
        room: &RoomId,
        earliest: Vec<String>,
        latest: Vec<String>,
        limit: usize,
    ) -> Result<Value, MatrixError> {
        self.check_server_in_room(origin, room).await?;
        let found = self
            .walk_back(room, latest, earliest, limit.clamp(1, 20), false)
            .await?;
        Ok(json!({ "events": found }))
    }

    /// `GET /backfill/{room}?v=…&limit=`: the events `from` and before
    /// them, newest first, at most `limit` (capped at 100).
    pub async fn backfill(
        &self,
        origin: &ServerName,
        room: &RoomId,
        from: Vec<String>,
        limit: usize,
    ) -> Result<Value, MatrixError> {
        self.check_server_in_room(origin, room).await?;
        let pdus = self
            .walk_back(room, from, Vec::new(), limit.clamp(1, 100), true)
            .await?;
        Ok(json!({
            "origin": self.server_name,
            "origin_server_ts": axon::time::now_ms(),
            "pdus": pdus,
        }))
    }

    /// The room's events reached by following `prev_events` back from
    /// `start` (themselves too with `include_start`), not past `stop`,
    /// breadth first, at most `limit`.
    async fn walk_back(
        &self,
        room: &RoomId,
        start: Vec<String>,
        stop: Vec<String>,
        limit: usize,
        include_start: bool,
    ) -> Result<Vec<Value>, MatrixError> {
        let room = room.as_str();
        let prevs = |pdu: &Value| -> Vec<String> {
            crate::events::reference_ids(pdu, "prev_events")
                .unwrap_or_default()
                .iter()
                .map(|id| id.to_string())
                .collect()
        };
        let mut seen: std::collections::HashSet<String> = stop.into_iter().collect();
        let mut frontier: Vec<String> = Vec::new();
        if include_start {
            frontier = start;
        } else {
            seen.extend(start.iter().cloned());
            for pdu in self.pdu_values(start).await? {
                frontier.extend(prevs(&pdu));
            }
        }
        let mut found: Vec<Value> = Vec::new();
        while !frontier.is_empty() && found.len() < limit {
            let batch: Vec<String> = frontier
                .drain(..)
                .filter(|id| seen.insert(id.clone()))
                .collect();
            for pdu in self.pdu_values(batch).await? {
                if found.len() >= limit {
                    break;
                }
                if pdu["room_id"].as_str() != Some(room) {
                    continue;
                }
                frontier.extend(prevs(&pdu));
                found.push(pdu);
            }
        }
        Ok(found)
    }

    /// After joining through `server`: the history before the join, asked
    /// of it (`/backfill`, up to `limit` events), each checked and kept
    /// outside the timeline's stream, older below newer, where backward
    /// pagination finds it.
    async fn backfill_from(
        &self,
        server: &ServerName,
        room: &RoomId,
        version: &str,
        from: &[OwnedEventId],
        limit: usize,
    ) {
        let mut path = format!(
            "/_matrix/federation/v1/backfill/{}?limit={limit}",
            super::percent_encode(room.as_str())
        );
        for id in from {
            path.push_str(&format!("&v={}", super::percent_encode(id.as_str())));
        }
        let answer = match self
            .ask_server(server, reqwest::Method::GET, &path, None)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::info!("backfill of {room} from {server}: {e}");
                return;
            }
        };
        let mut events = Vec::new();
        for value in answer["pdus"].as_array().into_iter().flatten() {
            let Ok(pdu) = Pdu::parse(value.clone(), version) else {
                continue;
            };
            if pdu.room_id != room {
                continue;
            }
            match self.verify_pdu(pdu, version).await {
                Ok(pdu) => events.push(pdu),
                Err(e) => tracing::info!("backfilled event refused: {e}"),
            }
        }
        events.sort_by_key(|e| std::cmp::Reverse(e.depth));
        let new: Vec<NewEvent> = events.iter().map(Pdu::to_new_event).collect();
        if let Err(e) = self.storage.persist_backfill(new).await {
            tracing::info!("backfill of {room}: {e}");
        }
    }

    /// `GET /event_auth/{room}/{event}`: the auth chain of an event of
    /// the room, as PDUs.
    pub async fn event_auth(
        &self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &ruma::EventId,
    ) -> Result<Value, MatrixError> {
        self.room_event_for(origin, room, event_id).await?;
        let chain = pdu_json(self.storage.auth_chain(vec![event_id.to_string()]).await?);
        Ok(json!({ "auth_chain": chain }))
    }

    /// `GET /state_ids/{room}?event_id=`: the state before an event and
    /// its auth chain, by event ID (`/state`: as PDUs).
    pub async fn state_at_event(
        &self,
        origin: &ServerName,
        room: &RoomId,
        event_id: &ruma::EventId,
        as_ids: bool,
    ) -> Result<Value, MatrixError> {
        let event = self.room_event_for(origin, room, event_id).await?;
        let state: Vec<String> = self
            .storage
            .state_at(room, event.stream - 1)
            .await?
            .into_iter()
            .map(|e| e.event_id.to_string())
            .collect();
        let chain = self.storage.auth_chain(state.clone()).await?;
        if as_ids {
            let chain_ids: Vec<String> = chain.into_iter().map(|(id, _)| id).collect();
            return Ok(json!({ "pdu_ids": state, "auth_chain_ids": chain_ids }));
        }
        let pdus = self.pdu_values(state).await?;
        Ok(json!({ "pdus": pdus, "auth_chain": pdu_json(chain) }))
    }
}
