//! Load benchmark of `PUT /rooms/{id}/send`: one client sending
//! sequentially, then 32 clients at once (each in its own room, and all in
//! one room, then in that room grown to 200 members), against a real server on loopback with durable commits
//! (SQLite WAL, synchronous=FULL). Reports events/s and p50/p99 latency.
//!
//! `cargo bench --bench load` (`-- --quick` for a short run). The load
//! generator shares the machine's cores with the server.

use axon_server::config::HomeserverConfig;
use axon_server::RunningServer;
use serde_json::json;
use std::time::{Duration, Instant};

struct User {
    token: String,
    http: reqwest::Client,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, events: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{name:<34} {events:>6} events in {:>6.2}s: {:>8.0} events/s, p50 {:>7.3} ms, p99 {:>7.3} ms",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
}

async fn register(base: &str, name: &str) -> User {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()
        .unwrap();
    let body: serde_json::Value = http
        .post(format!("{base}/_matrix/client/v3/register"))
        .json(&json!({ "username": name, "password": "pw", "auth": { "type": "m.login.dummy" } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    User {
        token: body["access_token"]
            .as_str()
            .expect("registered")
            .to_string(),
        http,
    }
}

async fn create_room(base: &str, user: &User, public: bool) -> String {
    let body: serde_json::Value = user
        .http
        .post(format!("{base}/_matrix/client/v3/createRoom"))
        .bearer_auth(&user.token)
        .json(&json!({ "preset": if public { "public_chat" } else { "private_chat" } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["room_id"].as_str().unwrap().to_string()
}

fn enc(s: &str) -> String {
    s.replace('!', "%21").replace(':', "%3A")
}

/// Sends `count` messages one after another; returns each one's latency.
async fn send_many(
    base: String,
    user: User,
    room: String,
    count: usize,
    tag: String,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    let url = format!(
        "{base}/_matrix/client/v3/rooms/{}/send/m.room.message",
        enc(&room)
    );
    for i in 0..count {
        let start = Instant::now();
        let response = user
            .http
            .put(format!("{url}/{tag}-{i}"))
            .bearer_auth(&user.token)
            .json(&json!({ "msgtype": "m.text", "body": format!("message {i}") }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap();
        latencies.push(start.elapsed());
    }
    latencies
}

async fn run(quick: bool) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server_name: bench.local
listeners: [{{port: 0, bind_addresses: ['127.0.0.1']}}]
database: {{name: sqlite3, args: {{database: {db}}}}}
media_store_path: {media}
enable_registration: true
enable_registration_without_verification: true
rc_message: {{per_second: 0, burst_count: 0}}
rc_registration: {{per_second: 0, burst_count: 0}}
rc_joins: {{local: {{per_second: 0, burst_count: 0}}}}
",
        db = dir.path().join("bench.db").display(),
        media = dir.path().join("media").display(),
    );
    let config = HomeserverConfig::parse(&yaml).expect("bench config").config;
    let server = RunningServer::start(config).await.expect("server starts");
    let base = server.base_url();
    let (sequential, per_client) = if quick { (300, 50) } else { (3000, 300) };

    // Warm-up, then one client sending sequentially.
    let user = register(&base, "solo").await;
    let room = create_room(&base, &user, false).await;
    let _ = send_many(
        base.clone(),
        User {
            token: user.token.clone(),
            http: user.http.clone(),
        },
        room.clone(),
        50,
        "warm".into(),
    )
    .await;
    let start = Instant::now();
    let latencies = send_many(base.clone(), user, room, sequential, "seq".into()).await;
    report(
        "sequential, 1 client",
        sequential,
        start.elapsed(),
        latencies,
    );

    // 32 clients, each in its own room.
    let mut users = Vec::new();
    for i in 0..32 {
        let user = register(&base, &format!("sender{i}")).await;
        let room = create_room(&base, &user, false).await;
        users.push((user, room));
    }
    let start = Instant::now();
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(i, (user, room))| {
            tokio::spawn(send_many(
                base.clone(),
                user,
                room,
                per_client,
                format!("own{i}"),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    report(
        "32 clients, 32 rooms",
        32 * per_client,
        start.elapsed(),
        latencies,
    );

    // 32 clients in one room.
    let owner = register(&base, "owner").await;
    let shared = create_room(&base, &owner, true).await;
    let mut users = Vec::new();
    for i in 0..32 {
        let user = register(&base, &format!("member{i}")).await;
        let joined = user
            .http
            .post(format!(
                "{base}/_matrix/client/v3/rooms/{}/join",
                enc(&shared)
            ))
            .bearer_auth(&user.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert!(joined.status().is_success());
        users.push(user);
    }
    let senders: Vec<User> = users
        .iter()
        .map(|u| User {
            token: u.token.clone(),
            http: u.http.clone(),
        })
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(i, user)| {
            tokio::spawn(send_many(
                base.clone(),
                user,
                shared.clone(),
                per_client,
                format!("shared{i}"),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    report(
        "32 clients, 1 room",
        32 * per_client,
        start.elapsed(),
        latencies,
    );

    // The same room grown to 200 members: every message is evaluated
    // against each member's push rules.
    for i in 0..(200 - 33) {
        let user = register(&base, &format!("reader{i}")).await;
        let joined = user
            .http
            .post(format!(
                "{base}/_matrix/client/v3/rooms/{}/join",
                enc(&shared)
            ))
            .bearer_auth(&user.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert!(joined.status().is_success());
    }
    let start = Instant::now();
    let latencies = send_many(
        base.clone(),
        User {
            token: owner.token.clone(),
            http: owner.http.clone(),
        },
        shared.clone(),
        sequential / 2,
        "big-seq".into(),
    )
    .await;
    report(
        "1 client, 200 members",
        sequential / 2,
        start.elapsed(),
        latencies,
    );
    let start = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, user)| {
            tokio::spawn(send_many(
                base.clone(),
                user,
                shared.clone(),
                per_client,
                format!("big{i}"),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    report(
        "32 clients, 1 room, 200 members",
        32 * per_client,
        start.elapsed(),
        latencies,
    );
    server.shutdown().await;
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(quick));
}
