//! `test.Operator`: a module that performs operations through its
//! `ModuleApi` when a test asks over HTTP, so a test can drive the module
//! entry point of an operation as it drives the client and admin ones:
//! `POST /_synapse/client/operator/{operation}` with the arguments as JSON.
//!
//! | operation | body |
//! |---|---|
//! | `deactivate` | `{user}` |
//! | `set_displayname` | `{user, displayname}` |
//! | `membership` | `{sender, target, room, membership}` |
//! | `create_room` | `{creator, config}` |
//! | `send` | `{sender, room, type, content, state_key?}` |
//! | `account_data` | `{user, type, content}` |
//! | `publish` | `{room, public}` |

use axon::module::NewEventContent;
use axon::prelude::*;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};

/// The `modules:` entry that loads it.
pub const OPERATOR: &str = "  - module: test.Operator\n";

pub struct Operator;

const OPERATIONS: &[&str] = &[
    "deactivate",
    "set_displayname",
    "membership",
    "create_room",
    "send",
    "account_data",
    "publish",
];

fn arg<T: serde::de::DeserializeOwned>(body: &Value, name: &str) -> Result<T, ModuleError> {
    serde_json::from_value(body.get(name).cloned().unwrap_or(Value::Null))
        .map_err(|e| ModuleError::new(400, ErrCode::BadJson, format!("argument `{name}`: {e}")))
}

async fn run(api: &ModuleApi, operation: &str, body: Value) -> Result<Value, ModuleError> {
    match operation {
        "deactivate" => {
            let user: OwnedUserId = arg(&body, "user")?;
            api.deactivate_account(&user).await?;
            Ok(json!({}))
        }
        "set_displayname" => {
            let user: OwnedUserId = arg(&body, "user")?;
            let name: Option<String> = arg(&body, "displayname")?;
            api.set_displayname(&user, name.as_deref()).await?;
            Ok(json!({}))
        }
        "membership" => {
            let sender: OwnedUserId = arg(&body, "sender")?;
            let target: OwnedUserId = arg(&body, "target")?;
            let room: OwnedRoomId = arg(&body, "room")?;
            let membership: Membership = arg(&body, "membership")?;
            let event_id = api
                .update_room_membership(&sender, &target, &room, membership, None)
                .await?;
            Ok(json!({ "event_id": event_id }))
        }
        "create_room" => {
            let creator: OwnedUserId = arg(&body, "creator")?;
            let config: JsonObject = arg(&body, "config")?;
            let (room_id, alias) = api.create_room(&creator, config).await?;
            Ok(json!({ "room_id": room_id, "room_alias": alias }))
        }
        "send" => {
            let event = api
                .create_and_send_event_into_room(NewEventContent {
                    room_id: arg(&body, "room")?,
                    sender: arg(&body, "sender")?,
                    event_type: arg(&body, "type")?,
                    state_key: arg(&body, "state_key")?,
                    content: arg(&body, "content")?,
                })
                .await?;
            Ok(json!({ "event_id": event.event_id }))
        }
        "account_data" => {
            let user: OwnedUserId = arg(&body, "user")?;
            let data_type: String = arg(&body, "type")?;
            api.put_global_account_data(&user, &data_type, arg(&body, "content")?)
                .await?;
            Ok(json!({}))
        }
        "publish" => {
            let room: OwnedRoomId = arg(&body, "room")?;
            if arg::<bool>(&body, "public")? {
                api.add_room_to_public_room_list(&room).await?;
            } else {
                api.remove_room_from_public_room_list(&room).await?;
            }
            Ok(json!({}))
        }
        other => Err(ModuleError::new(
            404,
            ErrCode::NotFound,
            format!("no operation {other}"),
        )),
    }
}

/// Performs operations through its `ModuleApi` for tests.
#[module(name = "test.Operator")]
impl Operator {
    fn new(api: &ModuleApi) -> Self {
        for operation in OPERATIONS {
            let api = api.clone();
            api.clone().register_web_resource(
                &format!("/_synapse/client/operator/{operation}"),
                post(move |Json(body): Json<Value>| {
                    let api = api.clone();
                    async move {
                        let response: Response = match run(&api, operation, body).await {
                            Ok(value) => Json(value).into_response(),
                            Err(error) => error.into_response(),
                        };
                        response
                    }
                }),
            );
        }
        Operator
    }
}
