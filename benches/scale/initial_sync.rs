//! A user in R rooms of 50 events each (the room's own creation events, a
//! second member's join, and messages from both): the time of an initial
//! `/sync` with lazy-loaded members, as Element's first start makes, and of
//! an incremental one after an hour's traffic, taken as 5 new messages in
//! every room (1,000 for 200 rooms). Each is timed on 5 fresh devices, so
//! no server answers from a cache of the same request; medians quoted.

use crate::fanout::LAZY_FILTER;
use crate::harness::{
    enc, http, join_all, median, ms, register, Client, Kind, Server, Setup, Table,
};
use serde_json::json;
use std::time::Instant;

const EVENTS_PER_ROOM: usize = 50;
/// What `createRoom` with `public_chat` and a name, and a second member's
/// join, leave.
const SETUP_EVENTS: usize = 7;
const NEW_PER_ROOM: usize = 5;
const DEVICES: usize = 5;
/// Rooms filled at once.
const PARALLEL: usize = 8;

struct Figures {
    initial_ms: f64,
    incremental_ms: f64,
    initial_bytes: f64,
    rss_mib: f64,
}

async fn send(client: &Client, room: &str, txn: &str, body: &str) {
    client
        .put(
            &format!("/rooms/{}/send/m.room.message/{txn}", enc(room)),
            json!({ "msgtype": "m.text", "body": body }),
        )
        .await;
}

/// A timed sync on this device; its answer's size and `next_batch`.
async fn timed_sync(
    client: &Client,
    since: Option<&str>,
) -> (f64, usize, String, serde_json::Value) {
    let mut path = format!("/sync?filter={}", enc(LAZY_FILTER));
    if let Some(since) = since {
        path += &format!("&since={}&timeout=0", enc(since));
    }
    let started = Instant::now();
    let body = client.get(&path).await;
    let elapsed = ms(started.elapsed());
    let next = body["next_batch"].as_str().unwrap().to_string();
    (elapsed, body.to_string().len(), next, body)
}

async fn initial_sync(server: &Server, rooms: usize) -> Figures {
    let http = http(32);
    let reader = register(&http, &server.base, "reader").await;
    let talker = register(&http, &server.base, "talker").await;
    let mut room_ids = Vec::new();
    for chunk in (0..rooms).collect::<Vec<_>>().chunks(PARALLEL) {
        let filled = chunk.iter().map(|r| {
            let (reader, talker) = (reader.clone(), talker.clone());
            async move {
                let room = reader
                    .create_room(json!({ "preset": "public_chat", "name": format!("room {r}") }))
                    .await;
                talker.join(&room).await;
                for i in 0..EVENTS_PER_ROOM - SETUP_EVENTS {
                    let from = if i % 2 == 0 { &reader } else { &talker };
                    send(
                        from,
                        &room,
                        &format!("fill-{i}"),
                        &format!("message {i} in {r}"),
                    )
                    .await;
                }
                room
            }
        });
        room_ids.extend(join_all(filled).await);
    }
    let mut devices = Vec::new();
    for _ in 0..DEVICES {
        devices.push(reader.login_again("reader").await);
    }
    let mut initial = Vec::new();
    let mut sinces = Vec::new();
    let mut bytes = 0;
    for device in &devices {
        let (elapsed, size, next, body) = timed_sync(device, None).await;
        let joined = body["rooms"]["join"].as_object().map_or(0, |j| j.len());
        assert_eq!(
            joined, rooms,
            "{:?}: an initial sync has every room",
            server.kind
        );
        initial.push(elapsed);
        sinces.push(next);
        bytes = size;
    }
    for chunk in room_ids.chunks(PARALLEL) {
        join_all(chunk.iter().map(|room| {
            let talker = talker.clone();
            async move {
                for i in 0..NEW_PER_ROOM {
                    send(&talker, room, &format!("hour-{i}"), &format!("later {i}")).await;
                }
            }
        }))
        .await;
    }
    let mut incremental = Vec::new();
    for (device, since) in devices.iter().zip(&sinces) {
        let (elapsed, _, _, body) = timed_sync(device, Some(since)).await;
        let events: usize = body["rooms"]["join"].as_object().map_or(0, |j| {
            j.values()
                .map(|r| r["timeline"]["events"].as_array().map_or(0, Vec::len))
                .sum()
        });
        assert_eq!(
            events,
            rooms * NEW_PER_ROOM,
            "{:?}: the hour's messages",
            server.kind
        );
        incremental.push(elapsed);
    }
    Figures {
        initial_ms: median(initial),
        incremental_ms: median(incremental),
        initial_bytes: bytes as f64,
        rss_mib: server.rss_mib(),
    }
}

pub async fn run(sizes: &[usize], servers: &[Kind]) {
    for &rooms in sizes {
        let mut figures = Vec::new();
        for &kind in servers {
            let dir = tempfile::tempdir().unwrap();
            let server = crate::harness::start(kind, dir.path(), &Setup::default()).await;
            figures.push(initial_sync(&server, rooms).await);
        }
        let mut table = Table::new(format!(
            "sync, one user in {rooms} rooms of {EVENTS_PER_ROOM} events, lazy-loaded members"
        ));
        let mut row = |name: &str, pick: fn(&Figures) -> f64, unit| {
            table.row(name, pick(&figures[0]), figures.get(1).map(pick), unit)
        };
        row("initial sync, median of 5 devices", |f| f.initial_ms, "ms");
        row(
            "initial sync answer size",
            |f| f.initial_bytes / 1024.0,
            "KiB",
        );
        row(
            "incremental sync after 5 messages in every room",
            |f| f.incremental_ms,
            "ms",
        );
        row("RSS at the end", |f| f.rss_mib, "MiB");
        table.print();
    }
}
