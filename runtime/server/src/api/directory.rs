//! Room aliases, room directory visibility and the public room list.

use super::extract::{ApiPath, ApiQuery, Auth, JsonBody};
use super::rooms::room_id;
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::Actor;
use axon::callbacks::Visibility;
use axon::ErrCode;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ruma::{OwnedRoomAliasId, RoomAliasId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route(
            "/directory/room/{alias}",
            get(get_alias).put(put_alias).delete(delete_alias),
        )
        .route(
            "/directory/list/room/{room}",
            get(get_visibility).put(put_visibility),
        )
        .route(
            "/publicRooms",
            get(public_rooms_get).post(public_rooms_post),
        )
        .route("/rooms/{room}/aliases", get(room_aliases))
}

/// `GET /rooms/{room}/aliases`: the room's local aliases, for those who may
/// read the room.
async fn room_aliases(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let room = room_id(&room)?;
    hs.room_access(&requester.user_id, &room).await?;
    Ok(Json(
        json!({ "aliases": hs.storage.aliases_of(&room).await? }),
    ))
}

/// A room alias from a request; `M_INVALID_PARAM` if it is not one.
fn alias_id(alias: &str) -> Result<OwnedRoomAliasId, MatrixError> {
    RoomAliasId::parse(alias).map_err(|e| {
        MatrixError::new(
            400,
            ErrCode::InvalidParam,
            format!("invalid room alias `{alias}`: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct AliasBody {
    room_id: String,
}

async fn put_alias(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(alias): ApiPath<String>,
    JsonBody(body): JsonBody<AliasBody>,
) -> ApiResult {
    let alias = alias_id(&alias)?;
    let room = room_id(&body.room_id)?;
    hs.create_alias(&Actor::client(&requester), &alias, &room)
        .await?;
    Ok(Json(json!({})))
}

async fn get_alias(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(alias): ApiPath<String>,
) -> ApiResult {
    let alias = alias_id(&alias)?;
    let (room_id, servers) = hs.resolve_alias(&alias).await?;
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

async fn delete_alias(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(alias): ApiPath<String>,
) -> ApiResult {
    let alias = alias_id(&alias)?;
    hs.delete_alias(&Actor::client(&requester), &alias).await?;
    Ok(Json(json!({})))
}

fn unknown_room() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "Unknown room")
}

async fn get_visibility(
    State(hs): State<Arc<Homeserver>>,
    ApiPath(room): ApiPath<String>,
) -> ApiResult {
    let room = room_id(&room).map_err(|_| unknown_room())?;
    match hs.storage.room_snapshot(&room).await? {
        Some(snapshot) => Ok(Json(
            json!({ "visibility": if snapshot.is_public { "public" } else { "private" } }),
        )),
        None => Err(unknown_room()),
    }
}

#[derive(Deserialize)]
struct VisibilityBody {
    visibility: Visibility,
}

async fn put_visibility(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(room): ApiPath<String>,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> ApiResult {
    let room = room_id(&room).map_err(|_| unknown_room())?;
    hs.set_room_visibility(&Actor::client(&requester), &room, body.visibility)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
struct PublicRoomsQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    since: Option<String>,
    /// Another server, whose list is asked of it.
    #[serde(default)]
    server: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct PublicRoomsBody {
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub filter: Option<Value>,
}

impl PublicRoomsBody {
    /// The filter's search term, lower-cased.
    pub fn term(&self) -> Option<String> {
        self.filter
            .as_ref()
            .and_then(|f| f.get("generic_search_term"))
            .and_then(|t| t.as_str())
            .map(str::to_lowercase)
    }
}

#[derive(Deserialize, Default)]
struct ServerQuery {
    #[serde(default)]
    server: Option<String>,
}

/// The `server` a request names, if it is another one.
fn other_server(
    hs: &Homeserver,
    server: Option<&str>,
) -> Result<Option<ruma::OwnedServerName>, MatrixError> {
    let Some(server) = server else {
        return Ok(None);
    };
    let server = ruma::OwnedServerName::try_from(server)
        .map_err(|e| MatrixError::new(400, ErrCode::InvalidParam, format!("server: {e}")))?;
    Ok((server != hs.server_name).then_some(server))
}

async fn public_rooms_get(
    State(hs): State<Arc<Homeserver>>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<PublicRoomsQuery>,
) -> ApiResult {
    let server = other_server(&hs, q.server.as_deref())?;
    Ok(Json(
        hs.public_rooms_of(server.as_deref(), q.limit, q.since, None)
            .await?,
    ))
}

async fn public_rooms_post(
    State(hs): State<Arc<Homeserver>>,
    _auth: Auth,
    ApiQuery(q): ApiQuery<ServerQuery>,
    JsonBody(body): JsonBody<PublicRoomsBody>,
) -> ApiResult {
    let server = other_server(&hs, q.server.as_deref())?;
    let term = body.term();
    Ok(Json(
        hs.public_rooms_of(server.as_deref(), body.limit, body.since, term)
            .await?,
    ))
}
