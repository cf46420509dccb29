//! Test modules that use the `ModuleApi` against the real server.

#![allow(dead_code)]

use axon::module::{Cache, NewEventContent};
use axon::prelude::*;
use axum::extract::{Query, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Joins local users to the rooms they are invited to, from `on_new_event`
/// (as synapse-auto-accept-invite does).
pub struct AutoJoin {
    api: ModuleApi,
}

#[module(name = "test.AutoJoin")]
impl AutoJoin {
    fn new(api: &ModuleApi) -> Self {
        AutoJoin { api: api.clone() }
    }

    #[callback(third_party_rules)]
    async fn on_new_event(&self, event: &Event, _state: &StateMap) -> Result<(), ModuleError> {
        let invite = event.event_type == "m.room.member"
            && event.content.get("membership").and_then(|m| m.as_str()) == Some("invite");
        let Some(target) = event.state_key.as_deref().filter(|_| invite) else {
            return Ok(());
        };
        let target =
            OwnedUserId::try_from(target).map_err(|e| ModuleError::internal(e.to_string()))?;
        if self.api.is_mine(&target) {
            self.api
                .update_room_membership(&target, &target, &event.room_id, Membership::Join, None)
                .await?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolkitConfig {
    /// How often the periodic job runs.
    tick_ms: u64,
}

/// Web resources under `/_synapse/client/toolkit/` that use the API.
pub struct Toolkit;

fn reply(result: Result<serde_json::Value, ModuleError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

#[module(name = "test.Toolkit")]
impl Toolkit {
    fn new(config: ToolkitConfig, api: &ModuleApi) -> Result<Self, ConfigError> {
        if config.tick_ms == 0 {
            return Err(ConfigError::at("tick_ms", "must be more than 0"));
        }
        let base = "/_synapse/client/toolkit";

        let a = api.clone();
        api.register_web_resource(
            &format!("{base}/whoami"),
            get(move |request: Request| {
                let api = a.clone();
                async move {
                    let (parts, _) = request.into_parts();
                    reply(
                        api.get_user_by_req(&parts, false)
                            .await
                            .map(|u| json!({ "user_id": u.user_id, "is_admin": u.is_admin })),
                    )
                }
            }),
        );

        let a = api.clone();
        api.register_web_resource(
            &format!("{base}/bot"),
            post(move || {
                let api = a.clone();
                async move {
                    reply(
                        async {
                            let bot = api.register_user("bot", Some("The Bot"), false).await?;
                            let (device, token) = api.register_device(&bot, None, Some("bot device")).await?;
                            let exists = api.check_user_exists(&bot).await?;
                            Ok(json!({ "user_id": bot, "device_id": device, "access_token": token, "exists": exists }))
                        }
                        .await,
                    )
                }
            }),
        );

        let a = api.clone();
        api.register_web_resource(
            &format!("{base}/room"),
            post(move |request: Request| {
                let api = a.clone();
                async move {
                    reply(
                        async {
                            let (parts, _) = request.into_parts();
                            let user = api.get_user_by_req(&parts, false).await?;
                            let mut config = JsonObject::new();
                            config.insert("name".into(), "made by a module".into());
                            config.insert("room_alias_name".into(), "toolkit".into());
                            let (room, alias) = api.create_room(&user.user_id, config).await?;
                            let mut content = JsonObject::new();
                            content.insert("msgtype".into(), "m.notice".into());
                            content.insert("body".into(), "hello from the toolkit".into());
                            let event = api
                                .create_and_send_event_into_room(NewEventContent {
                                    room_id: room.clone(),
                                    sender: user.user_id.clone(),
                                    event_type: "m.room.message".into(),
                                    state_key: None,
                                    content,
                                })
                                .await?;
                            api.add_room_to_public_room_list(&room).await?;
                            let alias = alias.ok_or_else(|| ModuleError::internal("no alias"))?;
                            let looked_up = api.lookup_room_alias(&alias).await?.map(|(r, _)| r);
                            let state = api
                                .get_room_state(&room, Some(&[("m.room.name", None)]))
                                .await?;
                            let name = state
                                .values()
                                .next()
                                .and_then(|e| e.content.get("name").cloned());
                            Ok(json!({
                                "room_id": room,
                                "event_id": event.event_id,
                                "looked_up": looked_up,
                                "public": api.room_is_in_public_room_list(&room).await?,
                                "state_size": state.len(),
                                "name": name,
                            }))
                        }
                        .await,
                    )
                }
            }),
        );

        let a = api.clone();
        api.register_web_resource(
            &format!("{base}/account_data"),
            post(move |request: Request| {
                let api = a.clone();
                async move {
                    reply(
                        async {
                            let (parts, _) = request.into_parts();
                            let user = api.get_user_by_req(&parts, false).await?;
                            let mut content = JsonObject::new();
                            content.insert("set_by".into(), "toolkit".into());
                            api.put_global_account_data(&user.user_id, "org.test.toolkit", content)
                                .await?;
                            let back = api
                                .get_global_account_data(&user.user_id, "org.test.toolkit")
                                .await?;
                            Ok(json!({ "read_back": back }))
                        }
                        .await,
                    )
                }
            }),
        );

        // A periodic job: counts its runs.
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = ticks.clone();
        api.looping_background_call(Duration::from_millis(config.tick_ms), move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        api.register_web_resource(
            &format!("{base}/ticks"),
            get(move || {
                let ticks = ticks.clone();
                async move { Json(json!({ "ticks": ticks.load(Ordering::SeqCst) })) }
            }),
        );

        // A cached lookup: display names, with the number of real lookups.
        let names: Cache<OwnedUserId, String> = api.cache(100);
        let lookups = Arc::new(AtomicU64::new(0));
        let (a, n, l) = (api.clone(), names.clone(), lookups.clone());
        api.register_web_resource(
            &format!("{base}/name"),
            get(move |Query(q): Query<HashMap<String, String>>| {
                let (api, names, lookups) = (a.clone(), n.clone(), l.clone());
                async move {
                    reply(
                        async {
                            let user =
                                OwnedUserId::try_from(q.get("user").cloned().unwrap_or_default())
                                    .map_err(|e| {
                                    ModuleError::new(400, ErrCode::InvalidParam, e.to_string())
                                })?;
                            let name = names
                                .get_or_insert_with(user.clone(), || async {
                                    lookups.fetch_add(1, Ordering::SeqCst);
                                    Ok::<_, ModuleError>(
                                        api.get_profile(&user)
                                            .await?
                                            .display_name
                                            .unwrap_or_default(),
                                    )
                                })
                                .await?;
                            Ok(json!({ "name": name, "lookups": lookups.load(Ordering::SeqCst) }))
                        }
                        .await,
                    )
                }
            }),
        );
        api.register_web_resource(
            &format!("{base}/invalidate"),
            post(move |Query(q): Query<HashMap<String, String>>| {
                let names = names.clone();
                async move {
                    if let Ok(user) =
                        OwnedUserId::try_from(q.get("user").cloned().unwrap_or_default())
                    {
                        names.invalidate(&user);
                    }
                    Json(json!({}))
                }
            }),
        );
        Ok(Toolkit)
    }
}

/// Keeps notes in its own table and serves them from a web resource.
pub struct Notes {
    /// How many notes there were when the server started.
    at_start: Arc<AtomicU64>,
    api: ModuleApi,
}

#[module(name = "test.Notes")]
impl Notes {
    fn new(api: &ModuleApi) -> Self {
        api.database_migrations(&[
            "CREATE TABLE {prefix}notes (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, text TEXT NOT NULL)",
            "CREATE INDEX {prefix}notes_by_user ON {prefix}notes (user_id)",
        ]);
        let at_start = Arc::new(AtomicU64::new(0));
        let a = api.clone();
        let counted = at_start.clone();
        api.register_web_resource(
            "/_synapse/client/notes",
            get({
                let a = a.clone();
                move |request: Request| {
                    let api = a.clone();
                    let counted = counted.clone();
                    async move {
                        reply(
                            async {
                                let (parts, _) = request.into_parts();
                                let user = api.get_user_by_req(&parts, false).await?;
                                let notes: Vec<String> = api
                                    .db_read(move |txn| {
                                        txn.query_map(
                                            "SELECT text FROM {prefix}notes WHERE user_id = ?1 ORDER BY id",
                                            [user.user_id.as_str()],
                                            |r| r.get(0),
                                        )
                                    })
                                    .await?;
                                Ok(json!({ "notes": notes, "at_start": counted.load(Ordering::SeqCst) }))
                            }
                            .await,
                        )
                    }
                }
            })
            .post(move |Query(q): Query<HashMap<String, String>>, request: Request| {
                let api = a.clone();
                async move {
                    reply(
                        async {
                            let (parts, _) = request.into_parts();
                            let user = api.get_user_by_req(&parts, false).await?;
                            let text = q.get("text").cloned().unwrap_or_default();
                            api.db_write(move |txn| {
                                txn.execute(
                                    "INSERT INTO {prefix}notes (user_id, text) VALUES (?1, ?2)",
                                    axon::db::params![user.user_id.as_str(), text],
                                )
                            })
                            .await?;
                            Ok(json!({}))
                        }
                        .await,
                    )
                }
            }),
        );
        let a = api.clone();
        api.register_web_resource(
            "/_synapse/client/notes/sneak",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let api = a.clone();
                async move {
                    let sql = q.get("sql").cloned().unwrap_or_default();
                    let result = api.db_write(move |txn| txn.execute_batch(&sql)).await;
                    Json(json!({ "refused": result.is_err(), "error": result.err().map(|e| e.message) }))
                }
            }),
        );
        let a = api.clone();
        api.register_web_resource(
            "/_synapse/client/notes/misbehave",
            post(move |Query(q): Query<HashMap<String, String>>| {
                let api = a.clone();
                async move {
                    let how = q.get("how").cloned().unwrap_or_default();
                    let result = api
                        .db_write(move |txn| {
                            txn.execute(
                                "INSERT INTO {prefix}notes (user_id, text) VALUES ('@x:test.local', 'half done')",
                                [],
                            )?;
                            match how.as_str() {
                                "panic" => panic!("a module's closure panics on the writer"),
                                // Counts for ever: only SQLite's interrupt stops it.
                                _ => txn.query_row(
                                    "WITH RECURSIVE {prefix}c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM {prefix}c) SELECT COUNT(*) FROM {prefix}c",
                                    [],
                                    |r| r.get::<_, i64>(0),
                                ),
                            }
                        })
                        .await;
                    Json(json!({ "error": result.err().map(|e| e.message) }))
                }
            }),
        );
        Notes {
            at_start,
            api: api.clone(),
        }
    }

    async fn start(&self) -> Result<(), ModuleError> {
        let count: i64 = self
            .api
            .db_read(|txn| txn.query_row("SELECT COUNT(*) FROM {prefix}notes", [], |r| r.get(0)))
            .await?
            .unwrap_or(0);
        self.at_start.store(count as u64, Ordering::SeqCst);
        Ok(())
    }
}

/// Sends mail and fetches URLs through the API.
pub struct Outbound;

#[module(name = "test.Outbound")]
impl Outbound {
    fn new(api: &ModuleApi) -> Self {
        let a = api.clone();
        api.register_web_resource(
            "/_synapse/client/outbound/mail",
            post(move |Query(q): Query<HashMap<String, String>>| {
                let api = a.clone();
                async move {
                    let to = q.get("to").cloned().unwrap_or_default();
                    let app = api.email_app_name().unwrap_or_default();
                    let subject = format!("Your {app} account");
                    reply(
                        api.send_mail(&to, &subject, "<p>Renew <b>now</b></p>", "Renew now")
                            .await
                            .map(|_| json!({})),
                    )
                }
            }),
        );
        let a = api.clone();
        api.register_web_resource(
            "/_synapse/client/outbound/fetch",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let api = a.clone();
                async move {
                    let url = q.get("url").cloned().unwrap_or_default();
                    let timeout = q
                        .get("timeout_ms")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(30_000);
                    let client = api
                        .http_client()
                        .with_timeout(Duration::from_millis(timeout));
                    reply(client.get_json(&url).await.map(|got| json!({ "got": got })))
                }
            }),
        );
        Outbound
    }
}

/// Re-entrant like synapse-freeze-room: a message saying "freeze" makes the
/// module send a topic event from inside `check_event_allowed`, which goes
/// back through `check_event_allowed` itself.
pub struct Freezer {
    api: ModuleApi,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

#[module(name = "test.Freezer")]
impl Freezer {
    fn new(api: &ModuleApi) -> Self {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        api.register_web_resource(
            "/_synapse/client/freezer/seen",
            get(move || {
                let log = log.clone();
                async move { Json(json!({ "seen": *log.lock().unwrap() })) }
            }),
        );
        Freezer {
            api: api.clone(),
            seen,
        }
    }

    #[callback(third_party_rules)]
    async fn check_event_allowed(
        &self,
        event: &Event,
        _state: &StateMap,
    ) -> Result<EventAllowed, ModuleError> {
        self.seen.lock().unwrap().push(event.event_type.clone());
        if event.content.get("body").and_then(|b| b.as_str()) == Some("freeze") {
            let mut content = JsonObject::new();
            content.insert("topic".into(), "frozen".into());
            self.api
                .create_and_send_event_into_room(NewEventContent {
                    room_id: event.room_id.clone(),
                    sender: event.sender.clone(),
                    event_type: "m.room.topic".into(),
                    state_key: Some(String::new()),
                    content,
                })
                .await?;
        }
        Ok(EventAllowed::Allow)
    }
}
