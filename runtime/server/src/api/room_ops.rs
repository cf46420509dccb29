//! Room operations shared by the client API and the `ModuleApi`: sending an
//! event, changing a membership, creating a room.

use super::{now_ms, random_string, AppState, MatrixError};
use crate::events::{
    build_event, check_auth, membership_of, module_event, state_map, BuiltEvent, EventDraft,
    SUPPORTED_ROOM_VERSIONS,
};
use crate::storage::{NewEvent, NewRoom, Persisted, RoomSnapshot, SnapshotUpdate};
use axon::callbacks::{EventAllowed, SpamCheck};
use axon::ErrCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn not_found_room() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "No known servers")
}

/// Who acts: a client's user, or a local user a module acts as.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: String,
    pub device_id: Option<String>,
    /// Server admins skip the spam checks Synapse skips for them.
    pub admin: bool,
    pub shadow_banned: bool,
}

impl Actor {
    /// A local user acting without a device (as modules do).
    pub fn user(user_id: &str) -> Actor {
        Actor {
            user_id: user_id.to_string(),
            device_id: None,
            admin: false,
            shadow_banned: false,
        }
    }
}

impl From<&super::Requester> for Actor {
    fn from(r: &super::Requester) -> Actor {
        Actor {
            user_id: r.user_id.clone(),
            device_id: Some(r.device_id.clone()),
            admin: r.admin,
            shadow_banned: r.shadow_banned,
        }
    }
}

/// How an event is sent, which decides the checks it goes through.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// `(device_id, txn_id)`: a repeat returns the first event's ID.
    pub txn: Option<(String, String)>,
    /// Client messages and state go through `check_event_for_spam`;
    /// memberships and the events of room creation do not (as in Synapse).
    pub spam_check: bool,
}

/// A spam checker's denial as the client sees it.
fn spam_denial(
    message: &str,
    errcode: ErrCode,
    extra_fields: axon::callbacks::JsonObject,
) -> MatrixError {
    let mut error = MatrixError::new(403, errcode, message);
    error.extra_fields = extra_fields;
    error
}

/// Builds, authorises, checks with the modules and stores an event;
/// returns its ID. After it is stored, `on_new_event` runs in the background.
pub async fn send_event(
    state: &AppState,
    room_id: &str,
    draft: EventDraft,
    options: SendOptions,
) -> Result<String, MatrixError> {
    // The writer recognises a repeated transaction; the read here is only
    // for a retry that would now be refused (the sender left meanwhile):
    // it still gets the event it sent the first time.
    let sender = draft.sender.clone();
    let earlier_send = || async {
        match &options.txn {
            Some((device, txn_id)) => state.storage.event_for_txn(&sender, device, txn_id).await,
            None => Ok(None),
        }
    };
    for attempt in 1.. {
        let (built, snapshot) =
            match prepare_event(state, room_id, draft.clone(), options.spam_check).await {
                Ok(prepared) => prepared,
                Err(e) => {
                    if let Some(existing) = earlier_send().await? {
                        return Ok(existing);
                    }
                    return Err(e);
                }
            };
        let mut new = built.new;
        if let Some((device, txn_id)) = &options.txn {
            new.device_id = Some(device.clone());
            new.txn_id = Some(txn_id.clone());
        }
        let work = new_event_work(state, &snapshot, std::slice::from_ref(&new));
        drop(snapshot);
        let persisted = match state.storage.persist_events(None, vec![new]).await {
            // Another request built the very same event (same sender,
            // content, parents and millisecond), so the same ID: build this
            // one again a random few milliseconds later, so that it (and
            // any other send it collided with) gets an ID of its own.
            Err(crate::storage::StorageError::Conflict(_)) if attempt < 20 => {
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
            announce_new_events(state, work);
        }
        return Ok(persisted.event_id().to_string());
    }
    unreachable!("the loop returns")
}

/// Authorises and builds the next event of a room, then asks the modules:
/// `check_event_allowed` (which may replace it), then `check_event_for_spam`.
async fn prepare_event(
    state: &AppState,
    room_id: &str,
    draft: EventDraft,
    spam_check: bool,
) -> Result<(BuiltEvent, Arc<RoomSnapshot>), MatrixError> {
    let snapshot = state.storage.room_snapshot(room_id).await?.ok_or_else(|| {
        MatrixError::forbidden(format!("User {} not in room {room_id}", draft.sender))
    })?;
    check_auth(&snapshot, &draft)?;
    let built = build_event(&snapshot, &draft, now_ms())?;
    let built = allow_event(state, &snapshot, built, draft).await?;
    let spam = &state.callbacks.spam_checker;
    if spam_check && !spam.check_event_for_spam.is_empty() {
        if let SpamCheck::Deny {
            errcode,
            extra_fields,
        } = spam
            .check_event_for_spam(&module_event(&built.new)?)
            .await?
        {
            return Err(spam_denial(
                "This message has been rejected as probable spam",
                errcode,
                extra_fields,
            ));
        }
    }
    Ok((built, snapshot))
}

/// `check_event_allowed` with the state before the event: allowed as is,
/// refused, or replaced. A replacement is authorised and built anew on the
/// room as it is now (as Synapse rebuilds it): a module may have sent events
/// of its own first (synapse-freeze-room does).
pub(crate) async fn allow_event(
    state: &AppState,
    snapshot: &RoomSnapshot,
    built: BuiltEvent,
    draft: EventDraft,
) -> Result<BuiltEvent, MatrixError> {
    let rules = &state.callbacks.third_party_rules;
    if rules.check_event_allowed.is_empty() {
        return Ok(built);
    }
    let event = module_event(&built.new)?;
    match rules
        .check_event_allowed(&event, &state_map(snapshot))
        .await?
    {
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
            let current = state.storage.room_snapshot(&snapshot.room_id).await?;
            let base = current.as_deref().unwrap_or(snapshot);
            if draft.event_type != "m.room.create" {
                check_auth(base, &draft)?;
            }
            build_event(base, &draft, built.new.origin_server_ts)
        }
    }
}

/// What `on_new_event` will need once `events` are stored: each event with
/// the room state after it. Computed before the commit so nothing holds the
/// room snapshot across it (the writer then updates the cached one in
/// place instead of copying it); `None` when no module listens.
fn new_event_work(
    state: &AppState,
    before: &RoomSnapshot,
    events: &[NewEvent],
) -> Option<Vec<(axon::callbacks::Event, axon::callbacks::StateMap)>> {
    if state.callbacks.third_party_rules.on_new_event.is_empty() {
        return None;
    }
    let mut snapshot = before.clone();
    let mut work = Vec::new();
    for new in events {
        snapshot.apply(&SnapshotUpdate::from(new));
        if let Ok(event) = module_event(new) {
            work.push((event, state_map(&snapshot)));
        }
    }
    Some(work)
}

/// After events are stored: `on_new_event` for each, in the background (it
/// cannot refuse, and must not delay the reply).
fn announce_new_events(
    state: &AppState,
    work: Option<Vec<(axon::callbacks::Event, axon::callbacks::StateMap)>>,
) {
    let Some(work) = work else { return };
    let callbacks = state.callbacks.clone();
    tokio::spawn(async move {
        for (event, state_after) in work {
            callbacks
                .third_party_rules
                .on_new_event(&event, &state_after)
                .await;
        }
    });
}

/// Changes `target`'s membership in a room as `actor` (join, invite, leave,
/// kick, ban, unban). Joins and invites of local users carry their profile,
/// as Synapse's do; joins and invites go through the spam checker unless
/// the actor is a server admin.
pub async fn update_membership(
    state: &AppState,
    actor: &Actor,
    target: &str,
    room_id: &str,
    membership: &str,
    reason: Option<String>,
) -> Result<String, MatrixError> {
    update_membership_with(
        state,
        actor,
        target,
        room_id,
        membership,
        reason,
        Map::new(),
        true,
    )
    .await
}

/// `update_membership` with extra content (such as `is_direct`) and rate
/// limits optional (`createRoom`'s invites are not rate-limited, as in Synapse).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update_membership_with(
    state: &AppState,
    actor: &Actor,
    target: &str,
    room_id: &str,
    membership: &str,
    reason: Option<String>,
    extra: Map<String, Value>,
    ratelimit: bool,
) -> Result<String, MatrixError> {
    let sender = actor.user_id.as_str();
    let snapshot = state
        .storage
        .room_snapshot(room_id)
        .await?
        .ok_or_else(not_found_room)?;
    let current = membership_of(&snapshot, target).to_string();
    if membership == "join" && current == "join" {
        if let Some(entry) = snapshot
            .state
            .get(&("m.room.member".to_string(), target.to_string()))
        {
            return Ok(entry.event_id.clone());
        }
    }
    match membership {
        _ if !ratelimit => {}
        "join" => {
            state
                .ratelimit_user("rc_joins.local", sender, state.config.rc_joins.local)
                .await?
        }
        "invite" => {
            let limits = &state.config.rc_invites;
            state
                .ratelimit_user("rc_invites.per_room", room_id, limits.per_room)
                .await?;
            state
                .ratelimit_user("rc_invites.per_user", target, limits.per_user)
                .await?;
            state
                .ratelimit_user("rc_invites.per_issuer", sender, limits.per_issuer)
                .await?;
        }
        _ => {}
    }
    if !actor.admin {
        let spam = &state.callbacks.spam_checker;
        if let (Ok(user), Ok(room), Ok(target_id)) = (
            ruma::UserId::parse(sender),
            ruma::RoomId::parse(room_id),
            ruma::UserId::parse(target),
        ) {
            match membership {
                "join" if sender == target => {
                    if let SpamCheck::Deny {
                        errcode,
                        extra_fields,
                    } = spam
                        .user_may_join_room(&user, &room, current == "invite")
                        .await?
                    {
                        return Err(spam_denial(
                            "Not allowed to join this room",
                            errcode,
                            extra_fields,
                        ));
                    }
                }
                "invite" => {
                    if let SpamCheck::Deny {
                        errcode,
                        extra_fields,
                    } = spam.user_may_invite(&user, &target_id, &room).await?
                    {
                        return Err(spam_denial(
                            "Invites have been disabled on this server",
                            errcode,
                            extra_fields,
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    let mut content = extra;
    content.insert("membership".into(), json!(membership));
    if let Some(reason) = reason {
        content.insert("reason".into(), json!(reason));
    }
    if matches!(membership, "join" | "invite") {
        if let Some(user) = state.storage.get_user(target).await? {
            if let Some(name) = user.displayname {
                content.insert("displayname".into(), json!(name));
            }
            if let Some(avatar) = user.avatar_url {
                content.insert("avatar_url".into(), json!(avatar));
            }
        }
    }
    let draft = EventDraft {
        sender: sender.to_string(),
        event_type: "m.room.member".into(),
        state_key: Some(target.to_string()),
        content,
    };
    send_event(state, room_id, draft, SendOptions::default()).await
}

/// The body of `POST /createRoom`.
#[derive(Debug, Default, Deserialize)]
pub struct CreateRoomRequest {
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub room_alias_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub invite: Vec<String>,
    #[serde(default)]
    pub room_version: Option<String>,
    #[serde(default)]
    pub creation_content: Option<Map<String, Value>>,
    #[serde(default)]
    pub initial_state: Vec<InitialState>,
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub is_direct: bool,
    #[serde(default)]
    pub power_level_content_override: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Map<String, Value>,
}

/// Creates a room as `actor` from a `POST /createRoom` body; returns its ID
/// and alias. `on_create_room` may change the body first; then the spam
/// checks (`user_may_create_room`, `user_may_publish_room`,
/// `user_may_create_room_alias`, `user_may_invite`, skipped for admins) and
/// `check_visibility_can_be_modified` run before anything is stored, and
/// `check_event_allowed` runs on each event the room starts with.
pub async fn create_room(
    state: &AppState,
    actor: &Actor,
    mut body: Map<String, Value>,
) -> Result<(String, Option<String>), MatrixError> {
    let user =
        ruma::UserId::parse(&actor.user_id).map_err(|e| MatrixError::internal(e.to_string()))?;
    let rules = &state.callbacks.third_party_rules;
    if !rules.on_create_room.is_empty() {
        let requester = axon::callbacks::Requester {
            user_id: user.clone(),
            device_id: actor.device_id.as_deref().map(Into::into),
            is_guest: false,
            shadow_banned: actor.shadow_banned,
        };
        rules
            .on_create_room(&requester, &mut body, actor.admin)
            .await?;
    }
    let request: CreateRoomRequest = super::extract::parse_json(Value::Object(body.clone()))?;
    let spam = &state.callbacks.spam_checker;
    if !actor.admin {
        if let SpamCheck::Deny {
            errcode,
            extra_fields,
        } = spam.user_may_create_room(&user, &body).await?
        {
            return Err(spam_denial(
                "You are not permitted to create rooms",
                errcode,
                extra_fields,
            ));
        }
    }
    let room_version = request.room_version.clone().unwrap_or_else(|| "10".into());
    if !SUPPORTED_ROOM_VERSIONS.contains(&room_version.as_str()) {
        return Err(MatrixError::new(
            400,
            ErrCode::Custom("M_UNSUPPORTED_ROOM_VERSION".into()),
            format!("Your homeserver does not support the features required to join this room (room version {room_version})"),
        ));
    }
    let public = request.visibility.as_deref() == Some("public");
    let preset = request.preset.clone().unwrap_or_else(|| {
        if public {
            "public_chat".into()
        } else {
            "private_chat".into()
        }
    });
    if !matches!(
        preset.as_str(),
        "public_chat" | "private_chat" | "trusted_private_chat"
    ) {
        return Err(MatrixError::new(
            400,
            ErrCode::BadJson,
            format!("unknown preset `{preset}`"),
        ));
    }
    for invitee in &request.invite {
        if ruma::UserId::parse(invitee).is_err() {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                format!("invalid user ID in invite: {invitee}"),
            ));
        }
    }
    let alias = match &request.room_alias_name {
        Some(local) => {
            if local.is_empty() || local.contains(':') || local.contains(char::is_whitespace) {
                return Err(MatrixError::new(
                    400,
                    ErrCode::InvalidParam,
                    "Invalid characters in room alias",
                ));
            }
            let alias = format!("#{local}:{}", state.server_name());
            match ruma::RoomAliasId::parse(&alias) {
                Ok(parsed) => Some((alias, parsed)),
                Err(_) => {
                    return Err(MatrixError::new(
                        400,
                        ErrCode::InvalidParam,
                        "Invalid characters in room alias",
                    ))
                }
            }
        }
        None => None,
    };
    let room_id = format!("!{}:{}", random_string(18), state.server_name());
    let room = ruma::RoomId::parse(&room_id).map_err(|e| MatrixError::internal(e.to_string()))?;
    if public {
        if !actor.admin {
            if let SpamCheck::Deny {
                errcode,
                extra_fields,
            } = spam.user_may_publish_room(&user, &room).await?
            {
                return Err(spam_denial(
                    "Not allowed to publish room",
                    errcode,
                    extra_fields,
                ));
            }
        }
        let allowed = rules
            .check_visibility_can_be_modified(
                &room,
                &Default::default(),
                axon::callbacks::Visibility::Public,
            )
            .await;
        if !allowed {
            return Err(MatrixError::new(
                403,
                ErrCode::Unknown,
                "Room visibility value not allowed.",
            ));
        }
    }
    if let Some((_, parsed)) = &alias {
        if let SpamCheck::Deny {
            errcode,
            extra_fields,
        } = spam.user_may_create_room_alias(&user, parsed).await?
        {
            return Err(spam_denial(
                "This user is not permitted to create this alias",
                errcode,
                extra_fields,
            ));
        }
    }
    let alias = alias.map(|(a, _)| a);
    if let Some(alias) = &alias {
        match state
            .storage
            .create_alias(alias, &room_id, &actor.user_id)
            .await
        {
            Ok(()) => {}
            Err(crate::storage::StorageError::Conflict(_)) => {
                return Err(MatrixError::new(
                    400,
                    ErrCode::RoomInUse,
                    "Room alias already taken",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let created = create_room_events(
        state,
        actor,
        &room_id,
        &room_version,
        &preset,
        public,
        alias.as_deref(),
        &request,
    )
    .await;
    if created.is_err() {
        if let Some(alias) = &alias {
            let _ = state.storage.delete_alias(alias).await;
        }
    }
    created?;
    Ok((room_id, alias))
}

#[allow(clippy::too_many_arguments)]
async fn create_room_events(
    state: &AppState,
    actor: &Actor,
    room_id: &str,
    room_version: &str,
    preset: &str,
    public: bool,
    alias: Option<&str>,
    request: &CreateRoomRequest,
) -> Result<(), MatrixError> {
    let creator = actor.user_id.as_str();
    let empty = RoomSnapshot {
        room_id: room_id.to_string(),
        room_version: room_version.to_string(),
        is_public: public,
        state: Default::default(),
        extremities: Vec::new(),
        max_depth: 0,
    };
    let mut snapshot = empty.clone();
    let state_event = |event_type: &str, state_key: &str, content: Value| EventDraft {
        sender: creator.to_string(),
        event_type: event_type.into(),
        state_key: Some(state_key.into()),
        content: match content {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    };
    let mut create_content = request.creation_content.clone().unwrap_or_default();
    create_content.insert("room_version".into(), json!(room_version));
    if room_version == "10" {
        create_content.insert("creator".into(), json!(creator));
    } else {
        create_content.remove("creator");
    }
    let mut power_levels = json!({
        "users": { creator: 100 },
        "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100
        },
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 50, "historical": 100
    });
    if preset == "trusted_private_chat" {
        for invitee in &request.invite {
            power_levels["users"][invitee] = json!(100);
        }
    }
    if let Some(overrides) = &request.power_level_content_override {
        for (k, v) in overrides {
            power_levels[k] = v.clone();
        }
    }
    let creator_member = {
        let mut content = Map::new();
        content.insert("membership".into(), json!("join"));
        if let Some(user) = state.storage.get_user(creator).await? {
            if let Some(name) = user.displayname {
                content.insert("displayname".into(), json!(name));
            }
            if let Some(avatar) = user.avatar_url {
                content.insert("avatar_url".into(), json!(avatar));
            }
        }
        Value::Object(content)
    };
    // The events the server makes itself: trusted, not auth-checked.
    let mut drafts = vec![
        state_event("m.room.create", "", Value::Object(create_content)),
        state_event("m.room.member", creator, creator_member),
        state_event("m.room.power_levels", "", power_levels),
    ];
    if let Some(alias) = alias {
        drafts.push(state_event(
            "m.room.canonical_alias",
            "",
            json!({ "alias": alias }),
        ));
    }
    let join_rule = if preset == "public_chat" {
        "public"
    } else {
        "invite"
    };
    drafts.push(state_event(
        "m.room.join_rules",
        "",
        json!({ "join_rule": join_rule }),
    ));
    drafts.push(state_event(
        "m.room.history_visibility",
        "",
        json!({ "history_visibility": "shared" }),
    ));
    if preset != "public_chat" {
        drafts.push(state_event(
            "m.room.guest_access",
            "",
            json!({ "guest_access": "can_join" }),
        ));
    }
    let trusted = drafts.len();
    // What the creator asked for goes through the auth rules like any event.
    for initial in &request.initial_state {
        drafts.push(state_event(
            &initial.event_type,
            &initial.state_key,
            Value::Object(initial.content.clone()),
        ));
    }
    if let Some(name) = &request.name {
        drafts.push(state_event("m.room.name", "", json!({ "name": name })));
    }
    if let Some(topic) = &request.topic {
        drafts.push(state_event("m.room.topic", "", json!({ "topic": topic })));
    }
    let now = now_ms();
    let mut events = Vec::with_capacity(drafts.len());
    for (i, draft) in drafts.into_iter().enumerate() {
        if i >= trusted {
            check_auth(&snapshot, &draft)?;
        }
        let built = build_event(&snapshot, &draft, now)?;
        let built = allow_event(state, &snapshot, built, draft).await?;
        snapshot.apply(&SnapshotUpdate::from(&built.new));
        events.push(built.new);
    }
    let room = NewRoom {
        room_id: room_id.to_string(),
        room_version: room_version.to_string(),
        creator: creator.to_string(),
        is_public: public,
        created_ts: now,
    };
    let work = new_event_work(state, &empty, &events);
    let stored = state.storage.persist_events(Some(room), events).await?;
    debug_assert!(stored.iter().all(|p| matches!(p, Persisted::New { .. })));
    announce_new_events(state, work);
    // Then the invites, one by one through the usual invite path (spam
    // checks included), as Synapse sends them: modules see the new room.
    // A shadow-banned creator's invites are silently dropped.
    if !actor.shadow_banned {
        for invitee in &request.invite {
            let mut extra = Map::new();
            if request.is_direct {
                extra.insert("is_direct".into(), json!(true));
            }
            update_membership_with(state, actor, invitee, room_id, "invite", None, extra, false)
                .await?;
        }
    }
    Ok(())
}
