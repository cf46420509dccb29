//! `GET /_axon/admin/modules`: the loaded modules in order, their callbacks
//! and how those fared. HTML for people (open it with `?access_token=…`),
//! JSON for tools (`Accept: application/json` or `?format=json`). Server
//! admins only.

use super::extract::Auth;
use super::{ApiResult, MatrixError};
use crate::homeserver::Homeserver;
use axon::stats::CallbackRecord;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/_axon/admin/modules", get(modules_page))
}

/// A loaded module as the page lists it.
#[derive(Debug, Clone)]
pub struct ModuleSummary {
    pub index: usize,
    pub path: String,
    pub crate_name: &'static str,
    pub version: &'static str,
    pub status: &'static str,
}

fn callback_json(record: &CallbackRecord) -> Value {
    let stats = &record.stats;
    let ms = |q: f64| stats.latency.quantile(q).map(|s| s * 1000.0);
    let last_failure = stats
        .last_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .map(|(at, error)| json!({ "at": at, "error": error }));
    json!({
        "callback": record.callback,
        "calls": stats.is_timed().then(|| stats.calls.load(Ordering::Relaxed)),
        "denials": stats.denials.load(Ordering::Relaxed),
        "failures": {
            "error": stats.errors.load(Ordering::Relaxed),
            "panic": stats.panics.load(Ordering::Relaxed),
            "timeout": stats.timeouts.load(Ordering::Relaxed),
        },
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "last_failure": last_failure,
    })
}

fn status_json(state: &Homeserver) -> Value {
    let modules: Vec<Value> = state
        .modules
        .iter()
        .map(|m| {
            let callbacks: Vec<Value> = state
                .metrics
                .callbacks()
                .iter()
                .filter(|r| r.module.index == m.index)
                .map(callback_json)
                .collect();
            json!({
                "index": m.index,
                "path": m.path,
                "crate": m.crate_name,
                "version": m.version,
                "status": m.status,
                "callbacks": callbacks,
            })
        })
        .collect();
    json!({ "metrics_enabled": state.metrics.enabled, "modules": modules })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn status_html(status: &Value) -> String {
    let mut body = String::new();
    let timed = status["metrics_enabled"] == true;
    for module in status["modules"].as_array().into_iter().flatten() {
        body += &format!(
            "<section class=\"module\"><h2>modules[{}] <code>{}</code></h2>\n<p>{} {} · {}</p>\n",
            module["index"],
            escape(module["path"].as_str().unwrap_or_default()),
            escape(module["crate"].as_str().unwrap_or_default()),
            escape(module["version"].as_str().unwrap_or_default()),
            escape(module["status"].as_str().unwrap_or_default()),
        );
        let callbacks = module["callbacks"].as_array().cloned().unwrap_or_default();
        if callbacks.is_empty() {
            body += "<p>No callbacks.</p></section>\n";
            continue;
        }
        body += "<table><thead><tr><th>callback</th><th>calls</th><th>denials</th><th>errors</th><th>panics</th><th>timeouts</th><th>p50</th><th>p99</th><th>last failure</th></tr></thead><tbody>\n";
        for cb in callbacks {
            let latency = |v: &Value| match v.as_f64() {
                Some(ms) => format!("{ms:.2} ms"),
                None => "–".into(),
            };
            let last = match &cb["last_failure"] {
                Value::Null => "–".to_string(),
                failure => format!(
                    "<time data-ts=\"{}\">{}</time>: {}",
                    failure["at"],
                    failure["at"],
                    escape(failure["error"].as_str().unwrap_or_default())
                ),
            };
            body += &format!(
                "<tr class=\"callback\" data-failures=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{last}</td></tr>\n",
                cb["failures"]["error"].as_u64().unwrap_or(0)
                    + cb["failures"]["panic"].as_u64().unwrap_or(0)
                    + cb["failures"]["timeout"].as_u64().unwrap_or(0),
                escape(cb["callback"].as_str().unwrap_or_default()),
                match cb["calls"].as_u64() {
                    Some(calls) => calls.to_string(),
                    None => "–".into(),
                },
                cb["denials"],
                cb["failures"]["error"],
                cb["failures"]["panic"],
                cb["failures"]["timeout"],
                latency(&cb["p50_ms"]),
                latency(&cb["p99_ms"]),
            );
        }
        body += "</tbody></table></section>\n";
    }
    let note = if timed {
        ""
    } else {
        "<p class=\"note\">Calls are counted and timed with <code>enable_metrics: true</code>.</p>\n"
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Axon modules</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}</style>
</head><body>
<h1>Modules</h1>
<p id="summary">Modules in the order they run.</p>
{note}{body}<script>
// Local times for failure timestamps, and a summary line.
document.querySelectorAll("time[data-ts]").forEach(function (t) {{
  t.textContent = new Date(Number(t.dataset.ts)).toISOString();
}});
var modules = document.querySelectorAll("section.module").length;
var rows = document.querySelectorAll("tr.callback");
var failures = 0;
rows.forEach(function (r) {{ failures += Number(r.dataset.failures); }});
document.getElementById("summary").textContent =
  modules + " modules loaded, " + rows.length + " callbacks registered, " + failures + " failures";
</script>
</body></html>
"#
    )
}

fn wants_json(headers: &HeaderMap, query: Option<&str>) -> bool {
    let asked = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "format" && v == "json"))
        .unwrap_or(false);
    asked
        || headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| {
                accept.contains("application/json") && !accept.contains("text/html")
            })
}

async fn modules_page(
    State(state): State<Arc<Homeserver>>,
    Auth(requester): Auth,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    if !requester.admin {
        return Err(MatrixError::forbidden("You are not a server admin"));
    }
    let status = status_json(&state);
    Ok(if wants_json(&headers, uri.query()) {
        Json(status).into_response()
    } else {
        Html(status_html(&status)).into_response()
    })
}
