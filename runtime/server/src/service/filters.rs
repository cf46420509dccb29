//! Filters (`POST /user/{user}/filter`, `/sync?filter=`), checked against
//! the spec's shape as Synapse's JSON schema checks them: a field of the
//! wrong type is refused (`"lazy_load_members": "true"` is not true), not
//! read as something else. Unknown fields are allowed, for new features.

use super::MatrixError;
use axon::ErrCode;
use serde_json::Value;

#[derive(Clone, Copy)]
enum Shape {
    Bool,
    Number,
    Text,
    Texts,
    EventFilter,
    RoomFilter,
    RoomEventFilter,
}

const EVENT_FILTER: &[(&str, Shape)] = &[
    ("limit", Shape::Number),
    ("senders", Shape::Texts),
    ("not_senders", Shape::Texts),
    ("types", Shape::Texts),
    ("not_types", Shape::Texts),
];

const ROOM_EVENT_FILTER: &[(&str, Shape)] = &[
    ("limit", Shape::Number),
    ("senders", Shape::Texts),
    ("not_senders", Shape::Texts),
    ("types", Shape::Texts),
    ("not_types", Shape::Texts),
    ("rooms", Shape::Texts),
    ("not_rooms", Shape::Texts),
    ("contains_url", Shape::Bool),
    ("lazy_load_members", Shape::Bool),
    ("include_redundant_members", Shape::Bool),
    ("unread_thread_notifications", Shape::Bool),
    ("related_by_senders", Shape::Texts),
    ("related_by_rel_types", Shape::Texts),
];

const ROOM_FILTER: &[(&str, Shape)] = &[
    ("rooms", Shape::Texts),
    ("not_rooms", Shape::Texts),
    ("include_leave", Shape::Bool),
    ("ephemeral", Shape::RoomEventFilter),
    ("state", Shape::RoomEventFilter),
    ("timeline", Shape::RoomEventFilter),
    ("account_data", Shape::RoomEventFilter),
];

const FILTER: &[(&str, Shape)] = &[
    ("presence", Shape::EventFilter),
    ("account_data", Shape::EventFilter),
    ("room", Shape::RoomFilter),
    ("event_fields", Shape::Texts),
];

fn check(value: &Value, shape: Shape, path: &str) -> Result<(), MatrixError> {
    let wrong = |expected: &str| {
        MatrixError::new(
            400,
            ErrCode::BadJson,
            format!("filter field {path} must be {expected}"),
        )
    };
    let fields = match shape {
        Shape::Bool => {
            return value
                .is_boolean()
                .then_some(())
                .ok_or_else(|| wrong("a boolean"))
        }
        Shape::Number => {
            return value
                .is_number()
                .then_some(())
                .ok_or_else(|| wrong("a number"))
        }
        Shape::Text => {
            return value
                .is_string()
                .then_some(())
                .ok_or_else(|| wrong("a string"))
        }
        Shape::Texts => {
            let all_text = value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string));
            return all_text
                .then_some(())
                .ok_or_else(|| wrong("an array of strings"));
        }
        Shape::EventFilter => EVENT_FILTER,
        Shape::RoomFilter => ROOM_FILTER,
        Shape::RoomEventFilter => ROOM_EVENT_FILTER,
    };
    check_object(value, fields, path)
}

fn check_object(value: &Value, fields: &[(&str, Shape)], path: &str) -> Result<(), MatrixError> {
    let object = value.as_object().ok_or_else(|| {
        let at = if path.is_empty() { "the filter" } else { path };
        MatrixError::new(400, ErrCode::BadJson, format!("{at} must be an object"))
    })?;
    for (name, shape) in fields {
        if let Some(field) = object.get(*name) {
            let path = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            check(field, *shape, &path)?;
        }
    }
    Ok(())
}

/// Checks a filter's shape.
pub fn validate_filter(filter: &Value) -> Result<(), MatrixError> {
    check_object(filter, FILTER, "")?;
    if let Some(format) = filter.get("event_format") {
        check(format, Shape::Text, "event_format")?;
        if !matches!(format.as_str(), Some("client" | "federation")) {
            return Err(MatrixError::new(
                400,
                ErrCode::BadJson,
                "filter field event_format must be client or federation",
            ));
        }
    }
    Ok(())
}
