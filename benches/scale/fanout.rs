//! Big-room fan-out: M members join one room and long-poll `/sync` with a
//! lazy-loading filter, as Element does; then one sender sends 100 messages
//! at 10 per second. Delivery latency (send answered → the member's `/sync`
//! has it) p50/p99, deliveries missing or only behind a gapped timeline,
//! `PUT /send` p50, server CPU seconds of the send phase, RSS before and
//! after, and `/sync` answers per message per member.

use crate::harness::{enc, http, percentile, register, register_many, Kind, Server, Setup, Table};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MESSAGES: usize = 100;
const RATE_PER_SECOND: u64 = 10;
pub const LAZY_FILTER: &str =
    r#"{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":20}}}"#;

struct Figures {
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    missing: usize,
    put_p50_ms: f64,
    cpu_seconds: f64,
    rss_before_mib: f64,
    rss_after_mib: f64,
    answers_per_message_per_member: f64,
}

async fn fanout(server: &Server, members: usize) -> Figures {
    let http = http(members + 8);
    let tag = format!("m{members}");
    let sender = register(&http, &server.base, &format!("sender{tag}")).await;
    let room = sender.create_room(json!({ "preset": "public_chat" })).await;
    let clients = register_many(&http, &server.base, &format!("u{tag}x"), members, |c| {
        let room = room.clone();
        async move {
            c.join(&room).await;
            c
        }
    })
    .await;
    let filter = enc(LAZY_FILTER);
    // Every member syncs once, then long-polls; each records when it saw
    // each message and how many answers it got.
    let received: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let gapped = Arc::new(Mutex::new(0usize));
    let answers = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sinces = Vec::new();
    for client in &clients {
        let first = client.get(&format!("/sync?filter={filter}")).await;
        sinces.push(first["next_batch"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = server.rss_mib();
    let mut polls = Vec::new();
    for (client, mut since) in clients.iter().cloned().zip(sinces) {
        let (received, gapped, answers, stop, room, filter) = (
            received.clone(),
            gapped.clone(),
            answers.clone(),
            stop.clone(),
            room.clone(),
            filter.clone(),
        );
        polls.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/sync?filter={filter}&timeout=30000&since={since}");
                let body = client.get(&path).await;
                let now = Instant::now();
                *answers.lock().unwrap() += 1;
                since = body["next_batch"].as_str().unwrap().to_string();
                let timeline = &body["rooms"]["join"][&room]["timeline"];
                if timeline["limited"] == true {
                    *gapped.lock().unwrap() += 1;
                }
                let mut seen = received.lock().unwrap();
                for event in timeline["events"].as_array().into_iter().flatten() {
                    if event["type"] == "m.room.message" {
                        let id = event["event_id"].as_str().unwrap_or("").to_string();
                        seen.entry(id).or_default().push(now);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers_before = *answers.lock().unwrap();
    let cpu_before = server.cpu_seconds();
    let mut sent = Vec::new();
    let mut put_ms = Vec::new();
    let started = Instant::now();
    for i in 0..MESSAGES {
        let due = started + Duration::from_millis(i as u64 * 1000 / RATE_PER_SECOND);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let asked = Instant::now();
        let path = format!("/rooms/{}/send/m.room.message/{tag}-{i}", enc(&room));
        let body = json!({ "msgtype": "m.text", "body": format!("fan-out {i}") });
        let answer = sender.put(&path, body).await;
        let answered = Instant::now();
        put_ms.push((answered - asked).as_secs_f64() * 1000.0);
        sent.push((answer["event_id"].as_str().unwrap().to_string(), answered));
    }
    // Until every member has every message, or 20 s after the last.
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let complete = {
            let seen = received.lock().unwrap();
            sent.iter()
                .all(|(id, _)| seen.get(id).is_some_and(|v| v.len() >= members))
        };
        if complete || Instant::now() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = server.cpu_seconds() - cpu_before;
    let answers_during = *answers.lock().unwrap() - answers_before;
    let rss_after = server.rss_mib();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for poll in polls {
        poll.abort();
    }
    let seen = received.lock().unwrap();
    let mut latencies = Vec::new();
    let mut missing = 0;
    for (id, answered) in &sent {
        let times = seen.get(id).cloned().unwrap_or_default();
        missing += members.saturating_sub(times.len());
        latencies.extend(
            times
                .iter()
                .map(|t| t.saturating_duration_since(*answered).as_secs_f64() * 1000.0),
        );
    }
    latencies.sort_by(f64::total_cmp);
    put_ms.sort_by(f64::total_cmp);
    let gapped = *gapped.lock().unwrap();
    Figures {
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
        missing: missing + gapped,
        put_p50_ms: percentile(&put_ms, 0.5),
        cpu_seconds: cpu,
        rss_before_mib: rss_before,
        rss_after_mib: rss_after,
        answers_per_message_per_member: answers_during as f64 / (MESSAGES * members) as f64,
    }
}

pub async fn run(sizes: &[usize], servers: &[Kind]) {
    for &members in sizes {
        let mut figures = Vec::new();
        for &kind in servers {
            let dir = tempfile::tempdir().unwrap();
            let server = crate::harness::start(kind, dir.path(), &Setup::default()).await;
            figures.push(fanout(&server, members).await);
        }
        let mut table = Table::new(format!(
            "fan-out, {members} members, {MESSAGES} messages at {RATE_PER_SECOND}/s"
        ));
        let mut row = |name: &str, pick: fn(&Figures) -> f64, unit| {
            table.row(name, pick(&figures[0]), figures.get(1).map(pick), unit)
        };
        row("delivery latency p50", |f| f.latency_p50_ms, "ms");
        row("delivery latency p99", |f| f.latency_p99_ms, "ms");
        row(
            "deliveries missing or behind a gap",
            |f| f.missing as f64,
            "",
        );
        row("PUT /send p50", |f| f.put_p50_ms, "ms");
        row("server CPU, send phase", |f| f.cpu_seconds, "s");
        row(
            "RSS, members joined and waiting",
            |f| f.rss_before_mib,
            "MiB",
        );
        row("RSS, after the messages", |f| f.rss_after_mib, "MiB");
        row(
            "/sync answers per message per member",
            |f| f.answers_per_message_per_member,
            "",
        );
        table.print();
    }
}
