//! The JSON Schema of the `modules:` list (part of `axon --config-schema`):
//! each compiled-in module's `config:` from the module's config type, so
//! editors can check and complete a homeserver.yaml.

use super::descriptor::compiled_modules;
use serde_json::{json, Map, Value};
use std::marker::PhantomData;

/// Picks a config type's schema at compile time: `SchemaFromJsonSchema`
/// applies when the type derives `schemars::JsonSchema`, `SchemaUnknown`
/// otherwise (autoref specialization in the code `#[module]` emits).
pub struct SchemaProbe<T>(PhantomData<T>);

impl<T> SchemaProbe<T> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        SchemaProbe(PhantomData)
    }
}

pub trait SchemaFromJsonSchema {
    fn config_schema(&self) -> Option<Value>;
}

impl<T: schemars::JsonSchema> SchemaFromJsonSchema for &SchemaProbe<T> {
    fn config_schema(&self) -> Option<Value> {
        Some(schemars::schema_for!(T).to_value())
    }
}

pub trait SchemaUnknown {
    fn config_schema(&self) -> Option<Value>;
}

impl<T> SchemaUnknown for SchemaProbe<T> {
    fn config_schema(&self) -> Option<Value> {
        None
    }
}

/// A module whose constructor takes no config: nothing, or an empty mapping.
pub fn no_config_schema() -> Value {
    json!({ "type": ["object", "null"], "additionalProperties": false })
}

/// Rewrites `#/$defs/X` references in `schema` to `#/$defs/{prefix}X`, and
/// moves its `$defs` into `defs` under those names.
fn hoist_defs(mut schema: Value, prefix: &str, defs: &mut Map<String, Value>) -> Value {
    fn rewrite(value: &mut Value, prefix: &str) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get_mut("$ref") {
                    if let Some(name) = reference.strip_prefix("#/$defs/") {
                        *reference = format!("#/$defs/{prefix}{name}");
                    }
                }
                for v in map.values_mut() {
                    rewrite(v, prefix);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, prefix)),
            _ => {}
        }
    }
    rewrite(&mut schema, prefix);
    if let Some(Value::Object(own)) = schema.as_object_mut().and_then(|m| m.remove("$defs")) {
        for (name, def) in own {
            defs.insert(format!("{prefix}{name}"), def);
        }
    }
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
    }
    schema
}

/// The schema of the `modules:` list: each entry names a compiled-in path
/// (any path when `enabled: false`) with the config its module takes. The
/// modules' own definitions go into `defs`, under prefixed names.
pub fn modules_schema(defs: &mut Map<String, Value>) -> Value {
    let mut paths = Vec::new();
    let mut per_module = Vec::new();
    for descriptor in compiled_modules().iter() {
        paths.push(descriptor.path);
        let config = match (descriptor.config_schema)() {
            Some(schema) => {
                let prefix = format!("{}.", descriptor.path.replace("::", "."));
                hoist_defs(schema, &prefix, defs)
            }
            None => json!({
                "description": "This module's config type does not derive schemars::JsonSchema, so its config is not checked here."
            }),
        };
        per_module.push(json!({
            "if": { "properties": { "module": { "const": descriptor.path } }, "required": ["module"] },
            "then": { "properties": { "config": config } }
        }));
    }
    json!({
        "type": ["array", "null"],
        "description": "The modules to load, in the order their callbacks run.",
        "items": {
            "type": "object",
            "required": ["module"],
            "additionalProperties": false,
            "properties": {
                "module": { "type": "string", "description": "The module's path, such as `my_crate::MyModule`." },
                "config": { "description": "The module's own config." },
                "callback_timeout": {
                    "type": ["string", "integer"],
                    "description": "How long a callback may run, such as `5s` or `500ms` (default 10s)."
                },
                "enabled": { "type": "boolean", "description": "false keeps the block but skips the module." }
            },
            "if": { "properties": { "enabled": { "const": false } }, "required": ["enabled"] },
            "else": { "properties": { "module": { "enum": paths } } },
            "allOf": per_module
        }
    })
}
