//! What modules cost when they do nothing: start to ready, and message sends
//! per second, with no module and with N no-op modules (10 by default) on
//! every hook a send passes (`bench.Noop` in `main.rs`, its Python twin in
//! `harness.rs`). Sends: 16 senders, each in its own room, sending back to
//! back for 10 s; three rounds alternating the two configs, medians quoted.
//! Start: a restart on an existing database, median of 3.

use crate::harness::{enc, http, join_all, median, register, Kind, Setup, Table};
use serde_json::json;
use std::time::{Duration, Instant};

const SENDERS: usize = 16;
const WINDOW: Duration = Duration::from_secs(10);
const ROUNDS: usize = 3;

async fn start_ms(kind: Kind, setup: &Setup) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    drop(crate::harness::start(kind, dir.path(), setup).await);
    let mut starts = Vec::new();
    for _ in 0..3 {
        let server = crate::harness::start(kind, dir.path(), setup).await;
        starts.push(server.started_in.as_secs_f64() * 1000.0);
    }
    median(starts)
}

async fn sends_per_second(kind: Kind, setup: &Setup) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::harness::start(kind, dir.path(), setup).await;
    let http = http(SENDERS + 4);
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let sender = register(&http, &server.base, &format!("sender{i}")).await;
        let room = sender
            .create_room(json!({ "preset": "private_chat" }))
            .await;
        senders.push((sender, room));
    }
    let until = Instant::now() + WINDOW;
    let counts = join_all(senders.iter().map(|(sender, room)| async move {
        let mut sent = 0usize;
        while Instant::now() < until {
            sender
                .put(
                    &format!("/rooms/{}/send/m.room.message/t{sent}", enc(room)),
                    json!({ "msgtype": "m.text", "body": format!("message {sent}") }),
                )
                .await;
            sent += 1;
        }
        sent
    }))
    .await;
    counts.iter().sum::<usize>() as f64 / WINDOW.as_secs_f64()
}

pub async fn run(sizes: &[usize], servers: &[Kind]) {
    for &modules in sizes {
        let configs = [
            Setup::default(),
            Setup {
                noop_modules: modules,
            },
        ];
        let mut starts = Vec::new();
        let mut rates = Vec::new();
        for &kind in servers {
            let mut start = Vec::new();
            for setup in &configs {
                start.push(start_ms(kind, setup).await);
            }
            let mut rounds = [Vec::new(), Vec::new()];
            for _ in 0..ROUNDS {
                for (setup, samples) in configs.iter().zip(rounds.iter_mut()) {
                    samples.push(sends_per_second(kind, setup).await);
                }
            }
            starts.push(start);
            rates.push(rounds.map(median));
        }
        let mut table = Table::new(format!(
            "modules: none, and {modules} no-op modules on every hook"
        ));
        let pick = |v: &Vec<[f64; 2]>, i: usize| (v[0][i], v.get(1).map(|s| s[i]));
        let starts: Vec<[f64; 2]> = starts.into_iter().map(|s| [s[0], s[1]]).collect();
        let (a, s) = pick(&starts, 0);
        table.row("start to ready, no module", a, s, "ms");
        let (a, s) = pick(&starts, 1);
        table.row(format!("start to ready, {modules} modules"), a, s, "ms");
        let (a, s) = pick(&rates, 0);
        table.row(
            format!("sends per second, {SENDERS} senders, no module"),
            a,
            s,
            "/s",
        );
        let (a, s) = pick(&rates, 1);
        table.row(format!("sends per second, {modules} modules"), a, s, "/s");
        let cost = |r: &[f64; 2]| (1.0 - r[1] / r[0]) * 100.0;
        table.row(
            format!("sends per second lost to {modules} modules"),
            cost(&rates[0]),
            rates.get(1).map(cost),
            "%",
        );
        table.print();
    }
}
