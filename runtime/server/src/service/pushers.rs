//! Pushers: `GET /pushers`, `POST /pushers/set`, and HTTP pushers posting
//! `/_matrix/push/v1/notify` to the push gateway, as Synapse's `HttpPusher`
//! does: in order, from where the pusher left off (kept in storage, so a
//! restart resumes), retried with exponential backoff (1 s doubling to an
//! hour, a notification given up after a day of failures), and the pusher
//! dropped when the gateway rejects its pushkey.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::outbound::OutboundClient;
use crate::storage::{NotificationRow, PusherRow, Storage};
use axon::ErrCode;
use ruma::{OwnedUserId, UserId};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;
/// A pusher also looks for work this often, whatever woke it.
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// Notifications a pusher reads at once.
const BATCH: u32 = 20;
/// The path every push gateway serves (the push gateway API).
const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

type PusherKey = (String, String);
/// Each user's running pushers, by `(app_id, pushkey)`.
type WorkerMap = HashMap<OwnedUserId, HashMap<PusherKey, Arc<Worker>>>;

/// One pusher's worker: woken when its user has a new notification.
struct Worker {
    wake: tokio::sync::Notify,
}

/// What the workers share; they hold no reference to the homeserver, so
/// dropping it (which drops `stop`) ends them.
#[derive(Clone)]
struct PushContext {
    storage: Storage,
    client: OutboundClient,
    workers: Arc<Mutex<WorkerMap>>,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// The running pushers of this process, by user.
pub struct Pushers {
    context: PushContext,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Pushers {
    pub fn new(storage: Storage, client: OutboundClient) -> Pushers {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        Pushers {
            context: PushContext {
                storage,
                client,
                workers: Default::default(),
                stop: stopped,
            },
            stop,
        }
    }

    /// Starts a worker for every stored pusher (at start-up).
    pub async fn start_all(&self) -> Result<(), crate::storage::StorageError> {
        for pusher in self.context.storage.pushers(None).await? {
            self.start(&pusher);
        }
        Ok(())
    }

    /// Stops every worker (at shutdown).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    fn start(&self, pusher: &PusherRow) {
        let key = (pusher.app_id.clone(), pusher.pushkey.clone());
        let worker = Arc::new(Worker {
            wake: tokio::sync::Notify::new(),
        });
        {
            let mut workers = self.context.lock();
            let of_user = workers.entry(pusher.user_id.clone()).or_default();
            if let Some(running) = of_user.get(&key) {
                // Already running: it reads the new settings on its next round.
                running.wake.notify_one();
                return;
            }
            of_user.insert(key.clone(), worker.clone());
        }
        let context = self.context.clone();
        let user = pusher.user_id.clone();
        tokio::spawn(async move { context.run(user, key, worker).await });
    }

    /// Wakes the pushers of the users an event notified.
    pub fn wake(&self, users: &[&UserId]) {
        let workers = self.context.lock();
        if workers.is_empty() {
            return;
        }
        for user in users {
            for worker in workers.get(*user).into_iter().flat_map(HashMap::values) {
                worker.wake.notify_one();
            }
        }
    }

    /// Whether any user has a pusher here (so that a send need not list
    /// whom it notified when nobody is pushed to).
    pub fn any(&self) -> bool {
        !self.context.lock().is_empty()
    }
}

impl PushContext {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<OwnedUserId, HashMap<PusherKey, Arc<Worker>>>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, user: &UserId, key: &PusherKey) {
        let mut workers = self.lock();
        if let Some(of_user) = workers.get_mut(user) {
            of_user.remove(key);
            if of_user.is_empty() {
                workers.remove(user);
            }
        }
    }

    /// Waits for `duration`, or less if the server stops; true if it stopped.
    async fn pause(&self, duration: Duration, worker: Option<&Worker>) -> bool {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return true;
        }
        let woken = async {
            match worker {
                Some(worker) => worker.wake.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => true,
            _ = tokio::time::sleep(duration) => false,
            _ = woken => false,
        }
    }

    async fn run(self, user: OwnedUserId, key: PusherKey, worker: Arc<Worker>) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            if *self.stop.borrow() {
                return;
            }
            let pusher = match self.storage.pusher(&user, &key.0, &key.1).await {
                Ok(Some(pusher)) => pusher,
                Ok(None) => return self.forget(&user, &key),
                Err(e) => {
                    tracing::warn!("pusher of {user}: {e}");
                    if self.pause(Duration::from_secs(5), None).await {
                        return;
                    }
                    continue;
                }
            };
            let batch = match self
                .storage
                .unread_notifications_after(&user, pusher.last_stream_ordering, BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!("pusher of {user}: {e}");
                    Vec::new()
                }
            };
            if batch.is_empty() {
                if self.pause(IDLE_RECHECK, Some(&worker)).await {
                    return;
                }
                continue;
            }
            let mut failing_since = pusher.failing_since;
            for notification in batch {
                let stream = notification.event.stream;
                match self.dispatch(&pusher, &notification).await {
                    Ok(rejected) => {
                        if rejected {
                            tracing::info!(
                                "push gateway rejected pushkey of {user} ({}): removing the pusher",
                                pusher.app_id
                            );
                            let _ = self.storage.delete_pusher(&user, &key.0, &key.1).await;
                            return self.forget(&user, &key);
                        }
                        backoff = INITIAL_BACKOFF;
                        failing_since = None;
                        if !matches!(
                            self.storage.pusher_progress(&pusher, stream, None).await,
                            Ok(true)
                        ) {
                            return self.forget(&user, &key);
                        }
                    }
                    Err(e) => {
                        let now = axon::time::now_ms();
                        let since = *failing_since.get_or_insert(now);
                        if now - since > GIVE_UP_AFTER_MS {
                            tracing::warn!(
                                "giving up on a notification to {user} ({}): {e}",
                                pusher.app_id
                            );
                            backoff = INITIAL_BACKOFF;
                            failing_since = None;
                            let _ = self.storage.pusher_progress(&pusher, stream, None).await;
                            continue;
                        }
                        tracing::info!(
                            "push to {user} ({}) failed: {e}; retrying in {}s",
                            pusher.app_id,
                            backoff.as_secs()
                        );
                        let done = stream_before(&pusher, &notification);
                        let _ = self
                            .storage
                            .pusher_progress(&pusher, done, Some(since))
                            .await;
                        if self.pause(backoff, None).await {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        break;
                    }
                }
            }
        }
    }

    /// Posts one notification; `Ok(true)` if the gateway rejected the pushkey.
    async fn dispatch(&self, pusher: &PusherRow, n: &NotificationRow) -> Result<bool, String> {
        let data: Map<String, Value> = serde_json::from_str(&pusher.data).unwrap_or_default();
        let url = data
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut device_data = data.clone();
        device_data.remove("url");
        let event = &n.event;
        let actions: Vec<Value> = serde_json::from_str(&n.actions).unwrap_or_default();
        let tweaks: Map<String, Value> = actions
            .iter()
            .filter_map(|a| {
                let name = a.get("set_tweak")?.as_str()?;
                Some((
                    name.to_string(),
                    a.get("value").cloned().unwrap_or(json!(true)),
                ))
            })
            .collect();
        let high = event.event_type == "m.room.encrypted"
            || tweaks.get("highlight").is_some_and(|v| v == &json!(true))
            || tweaks.contains_key("sound");
        let badge = self
            .storage
            .rooms_with_unread(&pusher.user_id)
            .await
            .map_err(|e| e.to_string())?;
        let mut notification = json!({
            "event_id": event.event_id,
            "room_id": event.room_id,
            "prio": if high { "high" } else { "low" },
            "counts": { "unread": badge },
        });
        let mut device = json!({
            "app_id": pusher.app_id,
            "pushkey": pusher.pushkey,
            "pushkey_ts": pusher.pushkey_ts / 1000,
            "data": device_data,
        });
        if data.get("format").and_then(Value::as_str) != Some("event_id_only") {
            notification["id"] = json!(event.event_id);
            notification["type"] = json!(event.event_type);
            notification["sender"] = json!(event.sender);
            let content: Value = serde_json::from_str(event.content.get()).unwrap_or_default();
            if event.event_type == "m.room.member" {
                notification["membership"] = content["membership"].clone();
                notification["user_is_target"] =
                    json!(event.state_key.as_deref() == Some(pusher.user_id.as_str()));
            }
            // Synapse's `push.include_content`, on by default; Axon has no
            // key for it yet (event_id_only pushers carry no content).
            if content.as_object().is_some_and(|c| !c.is_empty()) {
                notification["content"] = content;
            }
            if let Ok(Some(room)) = self.storage.room_snapshot(&event.room_id).await {
                let state = |event_type: &str, key: &str| {
                    room.state
                        .get(&(event_type.to_string(), key.to_string()))
                        .map(|e| e.content.clone())
                };
                if let Some(name) = state("m.room.member", event.sender.as_str())
                    .and_then(|c| {
                        c.get("displayname")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .filter(|n| !n.is_empty())
                {
                    notification["sender_display_name"] = json!(name);
                }
                if let Some(name) = state("m.room.name", "")
                    .and_then(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                    .filter(|n| !n.is_empty())
                {
                    notification["room_name"] = json!(name);
                }
            }
            if !tweaks.is_empty() {
                device["tweaks"] = Value::Object(tweaks);
            }
        }
        notification["devices"] = json!([device]);
        let answer = self
            .client
            .post_json(&url, &json!({ "notification": notification }))
            .await?;
        Ok(answer["rejected"].as_array().is_some_and(|r| {
            r.iter()
                .any(|k| k.as_str() == Some(pusher.pushkey.as_str()))
        }))
    }
}

/// The position a pusher has finished when `failed` could not be sent.
fn stream_before(pusher: &PusherRow, failed: &NotificationRow) -> i64 {
    (failed.event.stream - 1).max(pusher.last_stream_ordering)
}

/// A field of `POST /pushers/set` that must be a string.
fn text_field(body: &Map<String, Value>, name: &str) -> Result<String, MatrixError> {
    match body.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(MatrixError::new(
            400,
            ErrCode::BadJson,
            format!("{name} must be a string"),
        )),
    }
}

impl Homeserver {
    /// `GET /pushers`.
    pub async fn pushers_of(&self, actor: &Actor) -> Result<Vec<Value>, MatrixError> {
        Ok(self
            .storage
            .pushers(Some(&actor.user_id))
            .await?
            .into_iter()
            .map(|p| {
                json!({
                    "pushkey": p.pushkey,
                    "kind": p.kind,
                    "app_id": p.app_id,
                    "app_display_name": p.app_display_name,
                    "device_display_name": p.device_display_name,
                    "profile_tag": p.profile_tag,
                    "lang": p.lang,
                    "data": serde_json::from_str::<Value>(&p.data).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// `POST /pushers/set`, with Synapse's checks: `kind: null` deletes; an
    /// HTTP pusher needs `data.url` ending in the notify path. Email
    /// pushers are not supported yet (Axon sends no notification mail).
    pub async fn set_pusher(
        &self,
        actor: &Actor,
        body: Map<String, Value>,
    ) -> Result<(), MatrixError> {
        if body.contains_key("pushkey")
            && body.contains_key("app_id")
            && body.get("kind") == Some(&Value::Null)
        {
            let (app_id, pushkey) = (text_field(&body, "app_id")?, text_field(&body, "pushkey")?);
            self.storage
                .delete_pusher(&actor.user_id, &app_id, &pushkey)
                .await?;
            return Ok(());
        }
        let required = [
            "kind",
            "app_id",
            "app_display_name",
            "device_display_name",
            "pushkey",
            "lang",
            "data",
        ];
        let absent: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| !body.contains_key(*k))
            .collect();
        if !absent.is_empty() {
            return Err(MatrixError::new(
                400,
                ErrCode::MissingParam,
                format!("Missing params: {absent:?}"),
            ));
        }
        let kind = text_field(&body, "kind")?;
        let pushkey = text_field(&body, "pushkey")?;
        if pushkey.len() > 512 {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                "pushkey is longer than 512 bytes",
            ));
        }
        let app_id = text_field(&body, "app_id")?;
        if app_id.len() > 64 {
            return Err(MatrixError::new(
                400,
                ErrCode::InvalidParam,
                "app_id is longer than 64 bytes",
            ));
        }
        let data = match body.get("data") {
            Some(Value::Object(data)) => data.clone(),
            _ => {
                return Err(MatrixError::new(
                    400,
                    ErrCode::BadJson,
                    "data must be an object",
                ))
            }
        };
        let config_error = |why: &str| {
            MatrixError::new(400, ErrCode::MissingParam, format!("Config Error: {why}"))
        };
        match kind.as_str() {
            "http" => {
                let url = match data.get("url") {
                    None => return Err(config_error("'url' required in data for HTTP pusher")),
                    Some(Value::String(url)) => url,
                    Some(_) => return Err(config_error("'url' must be a string")),
                };
                let parsed = url::Url::parse(url)
                    .map_err(|_| config_error("'url' must be an http(s) URL"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(config_error("'url' must be an http(s) URL"));
                }
                if parsed.path() != NOTIFY_PATH {
                    return Err(config_error(
                        "'url' must have a path of '/_matrix/push/v1/notify'",
                    ));
                }
            }
            "email" => {
                return Err(MatrixError::new(
                    400,
                    ErrCode::InvalidParam,
                    "email pushers are not supported by this server",
                ))
            }
            other => return Err(config_error(&format!("Unknown pusher kind {other:?}"))),
        }
        let append = match body.get("append") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(MatrixError::new(
                    400,
                    ErrCode::BadJson,
                    "append must be a boolean",
                ))
            }
        };
        let profile_tag = match body.get("profile_tag") {
            None | Some(Value::Null) => String::new(),
            Some(_) => text_field(&body, "profile_tag")?,
        };
        let pusher = PusherRow {
            user_id: actor.user_id.clone(),
            app_id,
            pushkey,
            kind,
            app_display_name: text_field(&body, "app_display_name")?,
            device_display_name: text_field(&body, "device_display_name")?,
            profile_tag,
            lang: text_field(&body, "lang")?,
            data: Value::Object(data).to_string(),
            device_id: actor.device_id.clone().ok_or_else(|| {
                MatrixError::new(400, ErrCode::Unknown, "a pusher belongs to a device")
            })?,
            pushkey_ts: axon::time::now_ms(),
            last_stream_ordering: 0,
            failing_since: None,
        };
        self.storage.set_pusher(pusher.clone(), append).await?;
        self.pushers.start(&pusher);
        Ok(())
    }

    /// `GET /notifications`: newest first, `from` a token from an earlier
    /// page, `only=highlight` for highlights only.
    pub async fn notifications_page(
        &self,
        actor: &Actor,
        requester: &super::Requester,
        from: Option<&str>,
        limit: Option<u32>,
        only: Option<&str>,
    ) -> Result<Value, MatrixError> {
        let before = from
            .map(|f| {
                f.parse::<i64>().map_err(|_| {
                    MatrixError::new(
                        400,
                        ErrCode::InvalidParam,
                        "from is not a token from this server",
                    )
                })
            })
            .transpose()?;
        let limit = limit.unwrap_or(50).clamp(1, 1000);
        let rows = self
            .storage
            .notifications(&actor.user_id, before, limit, only == Some("highlight"))
            .await?;
        let next_token = (rows.len() as u32 == limit)
            .then(|| rows.last().map(|r| r.event.stream.to_string()))
            .flatten();
        let events: Vec<_> = rows.iter().map(|r| r.event.clone()).collect();
        let served = self.serve_events(&events, requester, true).await?;
        let notifications: Vec<Value> = rows
            .iter()
            .zip(served)
            .map(|(row, event)| {
                json!({
                    "actions": serde_json::from_str::<Value>(&row.actions).unwrap_or_else(|_| json!([])),
                    "event": event,
                    "profile_tag": null,
                    "read": row.read,
                    "room_id": row.event.room_id,
                    "ts": row.event.origin_server_ts,
                })
            })
            .collect();
        let mut body = json!({ "notifications": notifications });
        if let Some(token) = next_token {
            body["next_token"] = json!(token);
        }
        Ok(body)
    }
}
