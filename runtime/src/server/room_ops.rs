//! Room operations shared by the client API and the `ModuleApi`: sending an
//! event, changing a membership, creating a room.

use super::{now_ms, random_string, AppState, MatrixError};
use crate::error::ErrCode;
use crate::events::{build_event, check_auth, membership_of, EventDraft, SUPPORTED_ROOM_VERSIONS};
use crate::storage::{NewRoom, Persisted};
use serde::Deserialize;
use serde_json::{json, Map, Value};

fn not_found_room() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "No known servers")
}

/// Builds, authorises and stores an event; returns its ID. A repeated
/// `(device, txn_id)` returns the first event's ID and stores nothing.
pub async fn send_event(
    state: &AppState,
    room_id: &str,
    draft: EventDraft,
    txn: Option<(String, String)>,
) -> Result<String, MatrixError> {
    // The writer recognises a repeated transaction; the read here is only
    // for a retry that would now be refused (the sender left meanwhile):
    // it still gets the event it sent the first time.
    let built = match prepare_event(state, room_id, &draft).await {
        Ok(built) => built,
        Err(e) => {
            if let Some((device, txn_id)) = &txn {
                if let Some(existing) = state
                    .storage
                    .event_for_txn(&draft.sender, device, txn_id)
                    .await?
                {
                    return Ok(existing);
                }
            }
            return Err(e);
        }
    };
    let mut new = built.new;
    if let Some((device, txn_id)) = txn {
        new.device_id = Some(device);
        new.txn_id = Some(txn_id);
    }
    let persisted = state.storage.persist_events(None, vec![new]).await?;
    match persisted.into_iter().next() {
        Some(p) => Ok(p.event_id().to_string()),
        None => Err(MatrixError::internal("the event was not stored")),
    }
}

/// Authorises and builds the next event of a room.
async fn prepare_event(
    state: &AppState,
    room_id: &str,
    draft: &EventDraft,
) -> Result<crate::events::BuiltEvent, MatrixError> {
    let snapshot = state.storage.room_snapshot(room_id).await?.ok_or_else(|| {
        MatrixError::forbidden(format!("User {} not in room {room_id}", draft.sender))
    })?;
    check_auth(&snapshot, draft)?;
    build_event(&snapshot, draft, now_ms())
}

/// Changes `target`'s membership in a room as `sender` (join, invite,
/// leave, kick, ban, unban). Joins and invites of local users carry their
/// profile, as Synapse's do.
pub async fn update_membership(
    state: &AppState,
    sender: &str,
    target: &str,
    room_id: &str,
    membership: &str,
    reason: Option<String>,
) -> Result<String, MatrixError> {
    let snapshot = state
        .storage
        .room_snapshot(room_id)
        .await?
        .ok_or_else(not_found_room)?;
    if membership == "join" && membership_of(&snapshot, target) == "join" {
        if let Some(entry) = snapshot
            .state
            .get(&("m.room.member".to_string(), target.to_string()))
        {
            return Ok(entry.event_id.clone());
        }
    }
    match membership {
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
    let mut content = Map::new();
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
    send_event(state, room_id, draft, None).await
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
    /// The request body as the client sent it, for the modules that see it.
    #[serde(skip)]
    pub raw: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Map<String, Value>,
}

/// Creates a room as `creator`; returns its ID and alias.
pub async fn create_room(
    state: &AppState,
    creator: &str,
    request: CreateRoomRequest,
) -> Result<(String, Option<String>), MatrixError> {
    let room_version = request.room_version.clone().unwrap_or_else(|| "10".into());
    if !SUPPORTED_ROOM_VERSIONS.contains(&room_version.as_str()) {
        return Err(MatrixError::new(
            400,
            ErrCode::Custom("M_UNSUPPORTED_ROOM_VERSION".into()),
            format!("Your homeserver does not support the features required to join this room (room version {room_version})"),
        ));
    }
    if let (Ok(user), Some(raw)) = (ruma::UserId::parse(creator), request.raw.as_ref()) {
        if let crate::callbacks::SpamCheck::Deny {
            errcode,
            extra_fields,
        } = state
            .callbacks
            .spam_checker
            .user_may_create_room(&user, raw)
            .await?
        {
            let mut error = MatrixError::new(403, errcode, "You are not permitted to create rooms");
            error.extra_fields = extra_fields;
            return Err(error);
        }
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
            if ruma::RoomAliasId::parse(&alias).is_err() {
                return Err(MatrixError::new(
                    400,
                    ErrCode::InvalidParam,
                    "Invalid characters in room alias",
                ));
            }
            Some(alias)
        }
        None => None,
    };
    let room_id = format!("!{}:{}", random_string(18), state.server_name());
    if let Some(alias) = &alias {
        match state.storage.create_alias(alias, &room_id, creator).await {
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
        creator,
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
    creator: &str,
    room_id: &str,
    room_version: &str,
    preset: &str,
    public: bool,
    alias: Option<&str>,
    request: &CreateRoomRequest,
) -> Result<(), MatrixError> {
    let mut snapshot = crate::storage::RoomSnapshot {
        room_id: room_id.to_string(),
        room_version: room_version.to_string(),
        is_public: public,
        state: Default::default(),
        extremities: Vec::new(),
        max_depth: 0,
    };
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
    for invitee in &request.invite {
        let mut content = json!({ "membership": "invite" });
        if request.is_direct {
            content["is_direct"] = json!(true);
        }
        if let Some(user) = state.storage.get_user(invitee).await? {
            if let Some(name) = user.displayname {
                content["displayname"] = json!(name);
            }
        }
        drafts.push(state_event("m.room.member", invitee, content));
    }
    let now = now_ms();
    let mut events = Vec::with_capacity(drafts.len());
    for (i, draft) in drafts.iter().enumerate() {
        if i >= trusted {
            check_auth(&snapshot, draft)?;
        }
        let built = build_event(&snapshot, draft, now)?;
        crate::events::apply_to_snapshot(&mut snapshot, &built, draft);
        events.push(built.new);
    }
    let room = NewRoom {
        room_id: room_id.to_string(),
        room_version: room_version.to_string(),
        creator: creator.to_string(),
        is_public: public,
        created_ts: now,
    };
    let stored = state.storage.persist_events(Some(room), events).await?;
    debug_assert!(stored.iter().all(|p| matches!(p, Persisted::New { .. })));
    Ok(())
}
