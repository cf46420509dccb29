//! The idle cost of a long-polling client: N users (1,000 by default) each
//! keep one `/sync?timeout=30000` open, as a client with nothing new does
//! all day. RSS with every poll connected, less RSS with the same users and
//! no connection open, per client.

use crate::harness::{enc, http, register_many, Kind, Server, Setup, Table};
use std::time::Duration;

struct Figures {
    rss_before_mib: f64,
    rss_polling_mib: f64,
    answers: usize,
}

async fn idle(server: &Server, clients: usize) -> Figures {
    let mut sinces = Vec::new();
    let users = {
        let setup = http(8);
        let users = register_many(&setup, &server.base, "idler", clients, |c| async { c }).await;
        for user in &users {
            let first = user.get("/sync").await;
            sinces.push(first["next_batch"].as_str().unwrap().to_string());
        }
        users
    };
    // The setup's pool is gone with its last clone: polls open their own.
    let polling = http(clients + 8);
    let users: Vec<_> = users.into_iter().map(|u| u.on(&polling)).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before = server.rss_mib();
    let answers = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let polls: Vec<_> = users
        .into_iter()
        .zip(sinces)
        .map(|(user, mut since)| {
            let answers = answers.clone();
            tokio::spawn(async move {
                loop {
                    let body = user
                        .get(&format!("/sync?timeout=30000&since={}", enc(&since)))
                        .await;
                    answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    since = body["next_batch"].as_str().unwrap().to_string();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_polling = server.rss_mib();
    for poll in polls {
        poll.abort();
    }
    Figures {
        rss_before_mib: rss_before,
        rss_polling_mib: rss_polling,
        answers: answers.load(std::sync::atomic::Ordering::Relaxed),
    }
}

pub async fn run(sizes: &[usize], servers: &[Kind]) {
    for &clients in sizes {
        let mut figures = Vec::new();
        for &kind in servers {
            let dir = tempfile::tempdir().unwrap();
            let server = crate::harness::start(kind, dir.path(), &Setup::default()).await;
            figures.push(idle(&server, clients).await);
        }
        let mut table = Table::new(format!("{clients} long-polling clients, nothing new"));
        let mut row = |name: &str, pick: &dyn Fn(&Figures) -> f64, unit| {
            table.row(name, pick(&figures[0]), figures.get(1).map(pick), unit)
        };
        row(
            "RSS, users registered, no connection",
            &|f| f.rss_before_mib,
            "MiB",
        );
        row("RSS, every client polling", &|f| f.rss_polling_mib, "MiB");
        row(
            "RSS per polling client",
            &|f| (f.rss_polling_mib - f.rss_before_mib) * 1024.0 / clients as f64,
            "KiB",
        );
        row(
            "answers in 10 s with nothing to say",
            &|f| f.answers as f64,
            "",
        );
        table.print();
    }
}
