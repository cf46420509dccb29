//! A public room of M members (5,000 by default): what a new member's join
//! costs, the whole `/members` list, one state change (a topic) in it, and
//! the memory the room takes per member. Each timed step runs 5 times;
//! medians quoted.

use crate::harness::{enc, http, median, ms, register, register_many, Kind, Server, Setup, Table};
use serde_json::json;
use std::time::Instant;

const REPEATS: usize = 5;

struct Figures {
    join_ms: f64,
    members_ms: f64,
    state_ms: f64,
    rss_empty_mib: f64,
    rss_full_mib: f64,
    setup_cpu_seconds: f64,
}

async fn big_room(server: &Server, members: usize) -> Figures {
    let http = http(16);
    let creator = register(&http, &server.base, "creator").await;
    let room = creator
        .create_room(json!({ "preset": "public_chat" }))
        .await;
    let rss_empty = server.rss_mib();
    let cpu_before = server.cpu_seconds();
    let progress = std::sync::atomic::AtomicUsize::new(0);
    register_many(&http, &server.base, "member", members, |c| {
        let (room, progress) = (room.clone(), &progress);
        async move {
            c.join(&room).await;
            let done = progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if done % 1000 == 0 {
                eprintln!("  {:?}: {done} of {members} joined", server.kind);
            }
            c
        }
    })
    .await;
    let setup_cpu = server.cpu_seconds() - cpu_before;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let rss_full = server.rss_mib();
    let mut joins = Vec::new();
    for i in 0..REPEATS {
        let newcomer = register(&http, &server.base, &format!("newcomer{i}")).await;
        let started = Instant::now();
        newcomer.join(&room).await;
        joins.push(ms(started.elapsed()));
    }
    let mut lists = Vec::new();
    for _ in 0..REPEATS {
        let started = Instant::now();
        let list = creator.get(&format!("/rooms/{}/members", enc(&room))).await;
        lists.push(ms(started.elapsed()));
        let count = list["chunk"].as_array().map_or(0, Vec::len);
        assert_eq!(
            count,
            members + 1 + REPEATS,
            "{:?}: /members has everyone",
            server.kind
        );
    }
    let mut changes = Vec::new();
    for i in 0..REPEATS {
        let started = Instant::now();
        creator
            .put(
                &format!("/rooms/{}/state/m.room.topic/", enc(&room)),
                json!({ "topic": format!("topic {i}") }),
            )
            .await;
        changes.push(ms(started.elapsed()));
    }
    Figures {
        join_ms: median(joins),
        members_ms: median(lists),
        state_ms: median(changes),
        rss_empty_mib: rss_empty,
        rss_full_mib: rss_full,
        setup_cpu_seconds: setup_cpu,
    }
}

pub async fn run(sizes: &[usize], servers: &[Kind]) {
    for &members in sizes {
        let mut figures = Vec::new();
        for &kind in servers {
            let dir = tempfile::tempdir().unwrap();
            let server = crate::harness::start(kind, dir.path(), &Setup::default()).await;
            figures.push(big_room(&server, members).await);
        }
        let mut table = Table::new(format!("a room of {members} members"));
        let mut row = |name: &str, pick: &dyn Fn(&Figures) -> f64, unit| {
            table.row(name, pick(&figures[0]), figures.get(1).map(pick), unit)
        };
        row("a new member's join, median of 5", &|f| f.join_ms, "ms");
        row("GET /members, median of 5", &|f| f.members_ms, "ms");
        row("a state change (topic), median of 5", &|f| f.state_ms, "ms");
        row(
            "server CPU, registering and joining everyone",
            &|f| f.setup_cpu_seconds,
            "s",
        );
        row("RSS, empty room", &|f| f.rss_empty_mib, "MiB");
        row("RSS, every member joined", &|f| f.rss_full_mib, "MiB");
        row(
            "RSS per member",
            &|f| (f.rss_full_mib - f.rss_empty_mib) * 1024.0 / members as f64,
            "KiB",
        );
        table.print();
    }
}
