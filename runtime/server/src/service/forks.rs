//! Forks of a room: when another server's event follows events that are
//! not this server's latest (both sides wrote at once), the state before
//! it is the state after its parents, and a state event of it is joined to
//! the room's current state by state resolution v2 (ruma's `state-res`).
//!
//! The state after a parent is read as the room's state at the parent's
//! stream position, which is exact while each fork is one event deep (the
//! common case: two servers sending at the same moment) and close for
//! deeper ones. Room version 1 has its own resolution algorithm, which
//! ruma does not carry: there the later event wins.

use crate::events::{room_version_rules, Pdu};
use crate::homeserver::Homeserver;
use crate::storage::RoomSnapshot;
use ruma::events::StateEventType;
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::state_res::StateMap;
use ruma::OwnedEventId;
use std::collections::HashMap;

/// The state entries the auth rules read for `pdu`.
fn auth_keys(pdu: &Pdu, version: &str) -> Result<Vec<(String, String)>, String> {
    let rules = room_version_rules(version);
    let kind = ruma::events::TimelineEventType::from(pdu.event_type.as_str());
    Ok(ruma::state_res::auth_types_for_event(
        &kind,
        &pdu.sender,
        pdu.state_key.as_deref(),
        &pdu.content,
        &rules.authorization,
    )?
    .into_iter()
    .map(|(kind, key)| (kind.to_string(), key))
    .collect())
}

/// A room state: the event at each (type, state key).
pub(crate) type PduState = HashMap<(String, String), Pdu>;

impl Homeserver {
    /// The state before `pdu` when it does not follow all of the room's
    /// latest events (a fork); `None` when it does, and the state before it
    /// is the room's current state.
    pub(crate) async fn state_before_fork(
        &self,
        pdu: &Pdu,
        snapshot: &RoomSnapshot,
    ) -> Result<Option<PduState>, String> {
        let follows_all = snapshot
            .extremities
            .iter()
            .all(|latest| pdu.prev_events.contains(latest));
        if follows_all {
            return Ok(None);
        }
        let auth_keys = match pdu.state_key {
            Some(_) => None,
            None => Some(auth_keys(pdu, &snapshot.room_version)?),
        };
        let mut states = Vec::new();
        for prev in &pdu.prev_events {
            let Some(event) = self
                .storage
                .get_event(prev)
                .await
                .map_err(|e| e.to_string())?
            else {
                // A parent that could not be had: judged by the current state.
                return Ok(None);
            };
            if event.stream <= 0 {
                // History or an outlier: no state of it is kept.
                return Ok(None);
            }
            // A state event may change the room's state, which state
            // resolution needs in full; any other event needs only the
            // entries its auth rules read.
            let stored = match &auth_keys {
                None => self.storage.state_at(&pdu.room_id, event.stream).await,
                Some(keys) => {
                    self.storage
                        .state_entries_at(&pdu.room_id, keys.clone(), event.stream)
                        .await
                }
            };
            let ids: Vec<String> = stored
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|e| e.event_id.to_string())
                .collect();
            states.push(self.pdus_by_key(ids, &snapshot.room_version).await?);
        }
        match states.len() {
            0 => Ok(None),
            1 => Ok(states.pop()),
            _ => {
                let resolved = self.resolve_states(&snapshot.room_version, &states).await?;
                let mut events: HashMap<OwnedEventId, Pdu> = HashMap::new();
                for state in states {
                    events.extend(state.into_values().map(|e| (e.event_id.clone(), e)));
                }
                Ok(Some(
                    resolved
                        .into_iter()
                        .filter_map(|(key, id)| Some((key, events.get(&id)?.clone())))
                        .collect(),
                ))
            }
        }
    }

    /// The entries of the room's current state that change when `pdu` (a
    /// state event of a fork, whose own state before it is `before`) joins
    /// it, beyond its own key: state resolution of the current state and
    /// the fork's state with `pdu`. Empty for room version 1.
    pub(crate) async fn resolve_fork(
        &self,
        pdu: &Pdu,
        before: &PduState,
        snapshot: &RoomSnapshot,
    ) -> Result<Vec<(String, String, OwnedEventId)>, String> {
        let Some(own_key) = pdu.state_key.clone().map(|k| (pdu.event_type.clone(), k)) else {
            return Ok(Vec::new());
        };
        if room_version_rules(&snapshot.room_version)
            .state_res
            .v2_rules()
            .is_none()
        {
            return Ok(Vec::new());
        }
        let current_ids: Vec<String> = snapshot
            .state
            .values()
            .map(|e| e.event_id.to_string())
            .collect();
        let current = self
            .pdus_by_key(current_ids, &snapshot.room_version)
            .await?;
        let mut fork = before.clone();
        fork.insert(own_key.clone(), pdu.clone());
        let resolved = self
            .resolve_states(&snapshot.room_version, &[current, fork])
            .await?;
        // What storing the event alone would leave: the current state with
        // the event at its key.
        let mut changes = Vec::new();
        for ((kind, key), id) in resolved {
            let alone = if (kind.clone(), key.clone()) == own_key {
                Some(&pdu.event_id)
            } else {
                snapshot
                    .state
                    .get(&(kind.clone(), key.clone()))
                    .map(|e| &e.event_id)
            };
            if alone != Some(&id) {
                changes.push((kind, key, id));
            }
        }
        Ok(changes)
    }

    /// Stored events by ID, as a state keyed by (type, state key).
    async fn pdus_by_key(&self, ids: Vec<String>, version: &str) -> Result<PduState, String> {
        let stored = self.storage.pdus(ids).await.map_err(|e| e.to_string())?;
        let mut state = PduState::new();
        for (_, text) in stored {
            let pdu = Pdu::from_stored(&text, version)?;
            if let Some(key) = pdu.state_key.clone() {
                state.insert((pdu.event_type.clone(), key), pdu);
            }
        }
        Ok(state)
    }

    /// State resolution v2 of `states`, with their auth chains read from
    /// storage: the winning event at each key.
    async fn resolve_states(
        &self,
        version: &str,
        states: &[PduState],
    ) -> Result<HashMap<(String, String), OwnedEventId>, String> {
        let rules = room_version_rules(version);
        let v2 = rules
            .state_res
            .v2_rules()
            .ok_or("room version 1 has no state resolution v2")?;
        let mut events: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut maps: Vec<StateMap<OwnedEventId>> = Vec::new();
        let mut chains: Vec<EventIdSet<OwnedEventId>> = Vec::new();
        for state in states {
            let ids: Vec<String> = state.values().map(|e| e.event_id.to_string()).collect();
            let chain = self
                .storage
                .auth_chain(ids)
                .await
                .map_err(|e| e.to_string())?;
            let mut chain_ids = EventIdSet::new();
            for (_, text) in chain {
                let pdu = Pdu::from_stored(&text, version)?;
                chain_ids.insert(pdu.event_id.clone());
                events.insert(pdu.event_id.clone(), pdu);
            }
            chains.push(chain_ids);
            maps.push(
                state
                    .iter()
                    .map(|((kind, key), e)| {
                        (
                            (StateEventType::from(kind.as_str()), key.clone()),
                            e.event_id.clone(),
                        )
                    })
                    .collect(),
            );
            events.extend(state.values().map(|e| (e.event_id.clone(), e.clone())));
        }
        let resolved = ruma::state_res::resolve(
            &rules.authorization,
            v2,
            &maps,
            chains,
            |id| events.get(id).cloned(),
            |_| None,
        )
        .map_err(|e| format!("state resolution failed: {e}"))?;
        Ok(resolved
            .into_iter()
            .map(|((kind, key), id)| ((kind.to_string(), key), id))
            .collect())
    }
}
