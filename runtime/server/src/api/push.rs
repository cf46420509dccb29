//! Push rules: `GET /pushrules/` and each rule's `GET`/`PUT`/`DELETE`,
//! `…/enabled` and `…/actions`; pushers (`GET /pushers`,
//! `POST /pushers/set`) and `GET /notifications`.

use super::extract::{ApiPath, ApiQuery, Auth, JsonBody};
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use crate::service::push_rules::{
    check_scope, find_rule, parse_actions, rule_kind, ruleset_json, NewRuleBody, Placement,
    RuleChange,
};
use axon::ErrCode;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/pushrules/", get(all_rules))
        .route("/pushrules", get(all_rules))
        .route("/pushrules/{scope}/", get(scope_rules))
        .route("/pushrules/{scope}/{kind}/", get(kind_rules))
        .route(
            "/pushrules/{scope}/{kind}/{rule_id}",
            get(get_rule).put(put_rule).delete(delete_rule),
        )
        .route(
            "/pushrules/{scope}/{kind}/{rule_id}/{attribute}",
            get(get_attribute).put(put_attribute),
        )
        .route("/pushers", get(list_pushers))
        .route("/pushers/set", post(set_pusher))
        .route("/notifications", get(notifications))
}

async fn list_pushers(State(hs): State<Arc<Homeserver>>, Auth(requester): Auth) -> ApiResult {
    let pushers = hs
        .pushers_of(&crate::service::Actor::client(&requester))
        .await?;
    Ok(Json(json!({ "pushers": pushers })))
}

async fn set_pusher(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    JsonBody(body): JsonBody<serde_json::Map<String, Value>>,
) -> ApiResult {
    hs.set_pusher(&crate::service::Actor::client(&requester), body)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct NotificationsQuery {
    from: Option<String>,
    limit: Option<u32>,
    only: Option<String>,
}

async fn notifications(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiQuery(query): ApiQuery<NotificationsQuery>,
) -> ApiResult {
    Ok(Json(
        hs.notifications_page(
            &crate::service::Actor::client(&requester),
            &requester,
            query.from.as_deref(),
            query.limit,
            query.only.as_deref(),
        )
        .await?,
    ))
}

async fn all_rules(State(hs): State<Arc<Homeserver>>, Auth(requester): Auth) -> ApiResult {
    Ok(Json(hs.push_rules_content(&requester.user_id).await?))
}

async fn scope_rules(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath(scope): ApiPath<String>,
) -> ApiResult {
    check_scope(&scope)?;
    Ok(Json(ruleset_json(
        &*hs.push_rules(&requester.user_id).await?,
    )))
}

async fn kind_rules(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((scope, kind)): ApiPath<(String, String)>,
) -> ApiResult {
    check_scope(&scope)?;
    rule_kind(&kind)?;
    let rules = ruleset_json(&*hs.push_rules(&requester.user_id).await?);
    Ok(Json(rules.get(&kind).cloned().unwrap_or(json!([]))))
}

async fn get_rule(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((scope, kind, rule_id)): ApiPath<(String, String, String)>,
) -> ApiResult {
    check_scope(&scope)?;
    rule_kind(&kind)?;
    let rules = hs.push_rules(&requester.user_id).await?;
    Ok(Json(find_rule(&rules, &kind, &rule_id)?))
}

#[derive(Deserialize)]
struct PlacementQuery {
    before: Option<String>,
    after: Option<String>,
}

async fn put_rule(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((scope, kind, rule_id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<PlacementQuery>,
    JsonBody(body): JsonBody<NewRuleBody>,
) -> ApiResult {
    check_scope(&scope)?;
    let kind = rule_kind(&kind)?;
    let placement = Placement {
        before: q.before,
        after: q.after,
    };
    hs.change_push_rule(
        &requester.user_id,
        kind,
        &rule_id,
        RuleChange::Put(body, placement),
    )
    .await?;
    Ok(Json(json!({})))
}

async fn delete_rule(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((scope, kind, rule_id)): ApiPath<(String, String, String)>,
) -> ApiResult {
    check_scope(&scope)?;
    let kind = rule_kind(&kind)?;
    hs.change_push_rule(&requester.user_id, kind, &rule_id, RuleChange::Delete)
        .await?;
    Ok(Json(json!({})))
}

fn check_attribute(attribute: &str) -> Result<(), MatrixError> {
    match attribute {
        "enabled" | "actions" => Ok(()),
        _ => Err(MatrixError::new(
            400,
            ErrCode::Unrecognized,
            format!("Unknown push rule attribute {attribute:?}: `enabled` or `actions`"),
        )),
    }
}

async fn get_attribute(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((scope, kind, rule_id, attribute)): ApiPath<(String, String, String, String)>,
) -> ApiResult {
    check_scope(&scope)?;
    rule_kind(&kind)?;
    check_attribute(&attribute)?;
    let rules = hs.push_rules(&requester.user_id).await?;
    let rule = find_rule(&rules, &kind, &rule_id)?;
    let value = rule.get(&attribute).cloned().unwrap_or(Value::Null);
    Ok(Json(json!({ attribute: value })))
}

async fn put_attribute(
    State(hs): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    ApiPath((scope, kind, rule_id, attribute)): ApiPath<(String, String, String, String)>,
    JsonBody(mut body): JsonBody<serde_json::Map<String, Value>>,
) -> ApiResult {
    check_scope(&scope)?;
    let kind = rule_kind(&kind)?;
    check_attribute(&attribute)?;
    let change = if attribute == "enabled" {
        match body.get("enabled") {
            Some(Value::Bool(enabled)) => RuleChange::Enabled(*enabled),
            _ => {
                return Err(MatrixError::new(
                    400,
                    ErrCode::BadJson,
                    "`enabled` must be true or false",
                ))
            }
        }
    } else {
        RuleChange::Actions(parse_actions(body.remove("actions"))?)
    };
    hs.change_push_rule(&requester.user_id, kind, &rule_id, change)
        .await?;
    Ok(Json(json!({})))
}
