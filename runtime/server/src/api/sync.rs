//! `GET /sync`: initial and incremental, long-polling on the committed
//! stream position (no polling loop: a commit wakes the waiters).

use super::extract::{ApiQuery, Auth};
use super::rooms::parse_token;
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::Requester;
use crate::storage::{StoredEvent, WakeKey};
use axon::Membership;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/sync", get(sync))
}

/// Longest a client may ask `/sync` to wait.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct SyncQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    full_state: Option<bool>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    set_presence: Option<String>,
}

async fn sync(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiQuery(q): ApiQuery<SyncQuery>,
) -> ApiResult {
    let since = q.since.as_deref().map(parse_token).transpose()?;
    let full_state = q.full_state.unwrap_or(false);
    let filter = sync_filter(&hs, &requester, q.filter.as_deref()).await?;
    if let Some(presence) = q.set_presence.as_deref().or(Some("online")) {
        if matches!(presence, "online" | "unavailable") {
            hs.set_presence(&requester.user_id, presence, None).await?;
        }
    }
    let timeout = Duration::from_millis(q.timeout.unwrap_or(0));
    Ok(Json(
        long_poll(&hs, &requester, since, full_state, &filter, timeout).await?,
    ))
}

/// A sync answered at once when it is initial or full, else as soon as
/// something is new for the user, or empty after `timeout` (at most
/// `MAX_TIMEOUT`); `/events` waits through here too.
pub(super) async fn long_poll(
    hs: &Homeserver,
    requester: &Requester,
    since: Option<i64>,
    full_state: bool,
    filter: &SyncFilter,
    timeout: Duration,
) -> Result<Value, MatrixError> {
    let deadline = Instant::now() + timeout.min(MAX_TIMEOUT);
    loop {
        let upto = hs.storage.current_position();
        // Boxed: a long-poll waits below holding only this small future,
        // not the state of a whole sync computation inline in it.
        let (response, changed, keys) =
            Box::pin(compute(hs, requester, since, upto, full_state, filter)).await?;
        let now = Instant::now();
        if since.is_none() || full_state || changed || now >= deadline {
            return Ok(response);
        }
        drop(response);
        // Woken only by the commits that concern this user; one that landed
        // while the sync was computed has moved the position: look again.
        let listener = hs.storage.listen(&keys);
        if hs.storage.current_position() == upto {
            listener.wait(deadline - now).await;
        }
    }
}

/// Lazy-loading (the spec's `lazy_load_members`): of the members, the state
/// carries only the timeline's senders and the user, and an incremental
/// sync (`incremental_from`: its timeline's first position) adds a sender's
/// membership only if this device was not sent it yet.
async fn lazy_members(
    hs: &Homeserver,
    device: &(String, String),
    room: &ruma::RoomId,
    snapshot: Option<&crate::storage::RoomSnapshot>,
    timeline: &[StoredEvent],
    mut state: Vec<StoredEvent>,
    incremental_from: Option<i64>,
) -> Result<Vec<StoredEvent>, MatrixError> {
    let is_member = |e: &&StoredEvent| e.event_type == "m.room.member";
    let mut senders: std::collections::BTreeSet<&str> =
        timeline.iter().map(|e| e.sender.as_str()).collect();
    senders.insert(device.0.as_str());
    state.retain(|e| {
        e.event_type != "m.room.member"
            || e.state_key.as_deref().is_some_and(|k| senders.contains(k))
    });
    if let Some(first) = incremental_from {
        let in_timeline: std::collections::BTreeSet<&str> = timeline
            .iter()
            .filter(is_member)
            .filter_map(|e| e.state_key.as_deref())
            .collect();
        let wanted: Vec<ruma::OwnedEventId> = senders
            .iter()
            .filter(|s| !in_timeline.contains(*s))
            .filter_map(|s| {
                let key = ("m.room.member".to_string(), s.to_string());
                snapshot?.state.get(&key).map(|e| e.event_id.clone())
            })
            .collect();
        let unsent = hs.storage.caches().lazy_unsent(device, wanted);
        if !unsent.is_empty() {
            state = hs
                .storage
                .state_at(room, first - 1)
                .await?
                .into_iter()
                .filter(|e| unsent.contains(&e.event_id))
                .collect();
        }
    }
    let sent = state
        .iter()
        .chain(timeline)
        .filter(is_member)
        .map(|e| e.event_id.clone());
    hs.storage.caches().lazy_sent(device.clone(), false, sent);
    Ok(state)
}

/// What a `/sync` filter changes here: the timeline limit (default 10)
/// and lazy-loading of members.
pub(super) struct SyncFilter {
    pub(super) timeline_limit: u32,
    pub(super) lazy_load_members: bool,
}

async fn sync_filter(
    hs: &Homeserver,
    requester: &Requester,
    filter: Option<&str>,
) -> Result<SyncFilter, MatrixError> {
    // As Synapse: inline JSON is checked like a stored filter; an ID
    // must name one of the user's filters.
    let filter: Option<Value> = match filter {
        None => None,
        Some(f) if f.trim_start().starts_with('{') => {
            let inline: Value = serde_json::from_str(f).map_err(|_| {
                MatrixError::new(400, axon::ErrCode::NotJson, "Invalid filter JSON")
            })?;
            crate::service::filters::validate_filter(&inline)?;
            Some(inline)
        }
        Some(id) => {
            let stored = match id.parse::<i64>() {
                Ok(id) => hs.storage.get_filter(&requester.user_id, id).await?,
                Err(_) => None,
            };
            Some(stored.ok_or_else(|| {
                MatrixError::new(400, axon::ErrCode::InvalidParam, "No such filter")
            })?)
        }
    };
    let pointer = |path: &str| filter.as_ref().and_then(|f| f.pointer(path));
    Ok(SyncFilter {
        timeline_limit: pointer("/room/timeline/limit")
            .and_then(|l| l.as_u64())
            .map(|l| l.clamp(1, 1000) as u32)
            .unwrap_or(10),
        lazy_load_members: pointer("/room/state/lazy_load_members") == Some(&Value::Bool(true)),
    })
}

/// What someone invited to a room, or knocking on it, sees of it: the
/// spec's stripped state, with their own membership.
/// Of a room this server is not in, `given` is what the other server showed
/// (its entries count where this server knows nothing newer).
fn stripped_state(state: Vec<StoredEvent>, given: Vec<Value>, user: &ruma::UserId) -> Vec<Value> {
    let shown: Vec<StoredEvent> = state
        .into_iter()
        .filter(|e| {
            crate::events::in_stripped_state(&e.event_type, e.state_key.as_deref(), user.as_str())
        })
        .collect();
    let mut events = stripped(&shown);
    for entry in given {
        let known = shown.iter().any(|e| {
            entry["type"] == e.event_type.as_str()
                && entry["state_key"].as_str() == e.state_key.as_deref()
        });
        if !known && entry["type"].is_string() && entry["state_key"].is_string() {
            events.push(entry);
        }
    }
    events
}

fn stripped(events: &[StoredEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            json!({
                "type": e.event_type,
                "state_key": e.state_key,
                "content": serde_json::from_str::<Value>(e.content.get()).unwrap_or_default(),
                "sender": e.sender,
            })
        })
        .collect()
}

/// The spec's room summary: joined and invited counts, and for a room with
/// neither name nor canonical alias up to five heroes to name it after
/// (joined then invited members but the user, each in the order they came; else
/// those who left), as Synapse chooses them.
fn room_summary(room: &crate::storage::RoomSnapshot, user: &ruma::UserId) -> Value {
    let mut members: Vec<(&str, u64, &str)> = room
        .state
        .of_type("m.room.member")
        .filter_map(|e| {
            let membership = e.content.get("membership")?.as_str()?;
            Some((e.state_key.as_deref()?, e.origin_server_ts, membership))
        })
        .collect();
    members.sort_by_key(|(user, ts, _)| (*ts, *user));
    let count = |m: &str| members.iter().filter(|(_, _, x)| *x == m).count();
    let mut summary = json!({
        "m.joined_member_count": room.joined,
        "m.invited_member_count": count("invite"),
    });
    let named = ["m.room.name", "m.room.canonical_alias"].iter().any(|t| {
        room.state
            .get(&(t.to_string(), String::new()))
            .is_some_and(|e| {
                let key = if *t == "m.room.name" { "name" } else { "alias" };
                e.content
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty())
            })
    });
    if !named {
        let others = |wanted: &[&str]| -> Vec<&str> {
            members
                .iter()
                .filter(|(u, _, m)| *u != user.as_str() && wanted.contains(m))
                .map(|(u, _, _)| *u)
                .take(5)
                .collect()
        };
        let mut heroes = others(&["join"]);
        heroes.extend(others(&["invite"]));
        heroes.truncate(5);
        if heroes.is_empty() {
            heroes = others(&["leave", "ban"]);
        }
        summary["m.heroes"] = json!(heroes);
    }
    summary
}

/// A room's receipts as one `m.receipt` event (none if there are none):
/// private read receipts only to their owner.
fn receipt_events(user: &ruma::UserId, receipts: &[crate::storage::ReceiptRow]) -> Vec<Value> {
    let mut content = Map::new();
    for r in receipts {
        if r.receipt_type == "m.read.private" && r.user_id != user {
            continue;
        }
        let mut receipt = json!({ "ts": r.ts });
        if let Some(thread) = &r.thread_id {
            receipt["thread_id"] = json!(thread);
        }
        let by_type = content
            .entry(r.event_id.to_string())
            .or_insert_with(|| json!({}));
        by_type[&r.receipt_type][r.user_id.as_str()] = receipt;
    }
    if content.is_empty() {
        return Vec::new();
    }
    vec![json!({ "type": "m.receipt", "content": content })]
}

/// The sync from `since` to `upto`, whether it has anything new, and what
/// its long-poll waits on (the user, their joined rooms, and everyone's
/// presence when a presence router may route it).
pub(super) async fn compute(
    hs: &Homeserver,
    requester: &Requester,
    since: Option<i64>,
    upto: i64,
    full_state: bool,
    filter: &SyncFilter,
) -> Result<(Value, bool, Vec<WakeKey>), MatrixError> {
    hs.metrics.sync_computations.inc();
    let limit = filter.timeline_limit;
    let user = &requester.user_id;
    let device = (user.to_string(), requester.device_id.to_string());
    if filter.lazy_load_members && since.is_none() {
        hs.storage.caches().lazy_sent(device.clone(), true, []);
    }
    let after = since.unwrap_or(0);
    let mut changed = false;
    let mut join = Map::new();
    let mut invite = Map::new();
    let mut knock = Map::new();
    let mut leave = Map::new();
    let rows = hs
        .storage
        .sync_rows(user, &requester.device_id, since, upto, full_state, limit)
        .await?;
    let account_data = rows.account_data;
    let ignored = rows.ignored;
    // The device has what an earlier answer gave it up to `since`.
    if let (true, Some(since)) = (rows.to_device_acknowledged, since) {
        hs.storage
            .acknowledge_to_device(user, &requester.device_id, since)
            .await?;
    }
    let to_device: Vec<Value> = rows
        .to_device
        .iter()
        .map(|m| {
            json!({
                "sender": m.sender,
                "type": m.event_type,
                "content": serde_json::from_str::<Value>(&m.content).unwrap_or_default(),
            })
        })
        .collect();
    let mut joined_rooms = Vec::new();
    for mut room in rows.rooms {
        let m = &room.membership;
        let current = Some((m.membership, m.stream));
        match m.membership {
            Membership::Join => {
                joined_rooms.push(m.room_id.clone());
                let fresh = since.is_none() || m.stream > after || full_state;
                let limited = room.limited;
                let unfiltered_first = room.timeline.first().map_or(upto + 1, |e| e.stream);
                let mut timeline = hs
                    .visible_events_given(user, &m.room_id, current, room.timeline)
                    .await?;
                timeline.retain(|e| !ignored.contains(e.sender.as_str()));
                let room_account_data: Vec<Value> = account_data
                    .iter()
                    .filter(|a| a.room_id.as_ref() == Some(&m.room_id))
                    .map(|a| json!({ "type": a.data_type, "content": a.content }))
                    .collect();
                let mut ephemeral = receipt_events(user, &room.receipts);
                if let Some(typers) = hs.typing.changed_since(&m.room_id, after, fresh) {
                    ephemeral
                        .push(json!({ "type": "m.typing", "content": { "user_ids": typers } }));
                }
                if !fresh
                    && timeline.is_empty()
                    && room_account_data.is_empty()
                    && ephemeral.is_empty()
                {
                    continue;
                }
                let first = timeline.first().map(|e| e.stream).unwrap_or(upto + 1);
                let mut state_events = room.state;
                let mut extras = room.extras;
                // State read again below was not in the sync's first read.
                // Lazy-loading narrows it, or adds a sender's current
                // membership from the snapshot, served without a redaction
                // of it applied (rare: a redacted membership event).
                let mut refetched = false;
                if (fresh || limited) && unfiltered_first != first {
                    refetched = true;
                    // Events the user may not see were left out of the
                    // timeline: the state is the one before what they see.
                    state_events = hs.storage.state_at(&m.room_id, first - 1).await?;
                    if !fresh {
                        state_events.retain(|e| e.stream > after);
                    }
                }
                let snapshot = hs.storage.room_snapshot(&m.room_id).await?;
                let joined = snapshot.as_ref().map_or(0, |room| room.joined);
                if filter.lazy_load_members {
                    state_events = lazy_members(
                        hs,
                        &device,
                        &m.room_id,
                        snapshot.as_deref(),
                        &timeline,
                        state_events,
                        (!(fresh || limited)).then_some(first),
                    )
                    .await?;
                }
                // The full summary when the members may have changed (as
                // Synapse sends it): counting invites and choosing heroes
                // reads every member, which a big room's message does not pay.
                let members_changed =
                    fresh || limited || timeline.iter().any(|e| e.event_type == "m.room.member");
                let summary = match (&snapshot, members_changed) {
                    (Some(room), true) => {
                        let summary = room_summary(room, user);
                        if filter.lazy_load_members {
                            // Clients name the room after its heroes: send theirs.
                            for hero in summary["m.heroes"].as_array().into_iter().flatten() {
                                let Some(hero) = hero.as_str() else { continue };
                                if state_events.iter().chain(&timeline).any(|e| {
                                    e.event_type == "m.room.member"
                                        && e.state_key.as_deref() == Some(hero)
                                }) {
                                    continue;
                                }
                                if let Some(event) = hs
                                    .storage
                                    .current_state_event(&m.room_id, "m.room.member", hero)
                                    .await?
                                {
                                    refetched = true;
                                    state_events.push(event);
                                }
                            }
                        }
                        summary
                    }
                    _ => json!({ "m.joined_member_count": joined }),
                };
                join.insert(
                    m.room_id.to_string(),
                    json!({
                        "timeline": {
                            "events": hs.serve_events_with(&timeline, &mut extras, requester, false).await?,
                            "limited": limited,
                            "prev_batch": format!("s{}", first - 1),
                        },
                        "state": { "events": if refetched {
                            hs.serve_events(&state_events, requester, false).await?
                        } else {
                            hs.serve_events_with(&state_events, &mut extras, requester, false).await?
                        } },
                        "account_data": { "events": room_account_data },
                        "ephemeral": { "events": ephemeral },
                        "summary": summary,
                        "unread_notifications": {
                            "highlight_count": room.unread.highlights,
                            "notification_count": room.unread.notifications,
                        },
                    }),
                );
                changed = true;
            }
            Membership::Invite => {
                let inviter = room.state.iter().find(|e| {
                    e.event_type == "m.room.member" && e.state_key.as_deref() == Some(user.as_str())
                });
                if inviter.is_some_and(|e| ignored.contains(e.sender.as_str())) {
                    // An invite from someone the user ignores is not shown.
                    continue;
                }
                invite.insert(
                    m.room_id.to_string(),
                    json!({ "invite_state": { "events": stripped_state(room.state, room.stripped, user) } }),
                );
                changed = true;
            }
            Membership::Knock => {
                knock.insert(
                    m.room_id.to_string(),
                    json!({ "knock_state": { "events": stripped_state(room.state, room.stripped, user) } }),
                );
                changed = true;
            }
            Membership::Leave | Membership::Ban => {
                let mut timeline = hs
                    .visible_events_given(user, &m.room_id, current, room.timeline)
                    .await?;
                timeline.retain(|e| !ignored.contains(e.sender.as_str()));
                let first = timeline.first().map(|e| e.stream).unwrap_or(m.stream);
                leave.insert(
                    m.room_id.to_string(),
                    json!({
                        "timeline": {
                            "events": hs.serve_events_with(&timeline, &mut room.extras, requester, false).await?,
                            "limited": room.limited,
                            "prev_batch": format!("s{}", first - 1),
                        },
                        "state": { "events": [] },
                        "account_data": { "events": [] },
                    }),
                );
                changed = true;
            }
        }
    }
    let mut global: Vec<Value> = account_data
        .iter()
        .filter(|a| a.room_id.is_none())
        .map(|a| json!({ "type": a.data_type, "content": a.content }))
        .collect();
    let push_rules = crate::service::push_rules::PUSH_RULES_TYPE;
    if since.is_none() && !global.iter().any(|a| a["type"] == push_rules) {
        // Never changed: the server default, which clients read from here.
        let content = hs.push_rules_content(user).await?;
        global.push(json!({ "type": push_rules, "content": content }));
    }
    changed |= !global.is_empty();
    let presence = presence_events(hs, user, rows.presence_changed).await?;
    changed |= !presence.is_empty();
    changed |= !to_device.is_empty();
    let device_lists = rows.device_lists;
    changed |= !device_lists.changed.is_empty() || !device_lists.left.is_empty();
    let response = json!({
        "next_batch": format!("s{upto}"),
        "rooms": { "join": join, "invite": invite, "leave": leave, "knock": knock },
        "presence": { "events": presence },
        "account_data": { "events": global },
        "to_device": { "events": to_device },
        "device_lists": { "changed": device_lists.changed, "left": device_lists.left },
        "device_one_time_keys_count": rows.one_time_key_counts,
        "device_unused_fallback_key_types": rows.unused_fallback_key_types,
    });
    let mut keys: Vec<WakeKey> = joined_rooms.into_iter().map(WakeKey::Room).collect();
    keys.push(WakeKey::User(user.clone()));
    if hs.presence_is_routed() {
        keys.push(WakeKey::AnyPresence);
    }
    Ok((response, changed, keys))
}

/// The presence events this user receives (see `Homeserver::presence_for`).
async fn presence_events(
    hs: &Homeserver,
    user: &ruma::UserId,
    changed: Vec<crate::storage::PresenceRow>,
) -> Result<Vec<Value>, MatrixError> {
    let now = axon::time::now_ms();
    Ok(hs
        .presence_for(user, changed)
        .await?
        .into_iter()
        .map(|p| {
            let mut content = json!({
                "presence": p.presence,
                "last_active_ago": (now - p.last_active_ts).max(0),
                "currently_active": p.presence == "online",
            });
            if let Some(msg) = p.status_msg {
                content["status_msg"] = json!(msg);
            }
            json!({ "type": "m.presence", "sender": p.user_id, "content": content })
        })
        .collect())
}
