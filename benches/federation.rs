//! Federation benchmark: how long a message sent on one server takes to
//! reach a member on another (from the send's answer to the receiver's
//! long-polling `/sync` returning it), and how many messages a second one
//! server's sender gets through to the other. Axon to Axon, Axon to
//! Synapse 1.163 and Synapse to Axon, side by side in one run, all on
//! loopback over TLS with durable commits.
//!
//! `cargo bench --bench federation` (`-- --quick` for a short run). Needs
//! the Synapse virtualenv the tests use (`target/synapse`, made by
//! `.ci/run`). The senders, both servers and Synapse share the cores.

use axon_testkit::federation::Federation;
use axon_testkit::synapse::shared;
use axon_testkit::*;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Long-polls `user`'s sync from `since` until a message with `body` is
/// in `room`'s timeline; the next token.
async fn until_seen(s: &TestServer, user: &User, room: &str, since: &str, body: &str) -> String {
    let mut since = since.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, sync) = s
            .get(
                &format!("/sync?timeout=10000&since={}", enc(&since)),
                &user.token,
            )
            .await;
        assert!(status.is_success(), "sync: {sync}");
        let seen = sync["rooms"]["join"][room]["timeline"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["content"]["body"] == body);
        since = sync["next_batch"].as_str().unwrap().to_string();
        if seen {
            return since;
        }
        assert!(Instant::now() < deadline, "{body} never arrived");
    }
}

async fn sync_token(s: &TestServer, user: &User) -> String {
    let (_, sync) = s.get("/sync?timeout=0", &user.token).await;
    sync["next_batch"].as_str().unwrap().to_string()
}

/// `sender` on `from` shares a room with `receiver` on `to`; the room.
async fn shared_room(from: &TestServer, sender: &User, to: &TestServer, receiver: &User) -> String {
    let room = from
        .create_room(
            sender,
            json!({ "preset": "private_chat", "room_version": "10" }),
        )
        .await;
    let (status, body) = from.invite(sender, &room, &receiver.user_id).await;
    assert!(status.is_success(), "invite: {body}");
    let (status, body) = to.join(receiver, &room).await;
    assert!(status.is_success(), "join: {body}");
    // Both sides have the room before anything is timed.
    let since = sync_token(to, receiver).await;
    from.send_text(sender, &room, "warm-up").await;
    until_seen(to, receiver, &room, &since, "warm-up").await;
    room
}

async fn run(name: &str, from: &TestServer, to: &TestServer, rounds: usize, burst: usize) {
    let sender = from.register(&format!("sender{}", rand_suffix())).await;
    let receiver = to.register(&format!("receiver{}", rand_suffix())).await;
    let room = shared_room(from, &sender, to, &receiver).await;

    let mut latencies = Vec::with_capacity(rounds);
    let mut since = sync_token(to, &receiver).await;
    for n in 0..rounds {
        let body = format!("ping {n}");
        let started = Instant::now();
        from.send_text(&sender, &room, &body).await;
        since = until_seen(to, &receiver, &room, &since, &body).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    let started = Instant::now();
    for n in 0..burst {
        from.send_text(&sender, &room, &format!("burst {n}")).await;
    }
    let sent = started.elapsed();
    until_seen(
        to,
        &receiver,
        &room,
        &since,
        &format!("burst {}", burst - 1),
    )
    .await;
    let arrived = started.elapsed();
    println!(
        "{name:<18} one message: p50 {:>6.1} ms, p90 {:>6.1} ms ({rounds} rounds); {burst} sent one after another in {:.2} s, all arrived after {:.2} s: {:.0} messages/s",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.9).as_secs_f64() * 1000.0,
        sent.as_secs_f64(),
        arrived.as_secs_f64(),
        burst as f64 / arrived.as_secs_f64(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, burst) = if quick { (20, 100) } else { (100, 500) };
    let (synapse_fed, synapse) = shared();
    let synapse = synapse.client();
    let fed = Federation::new();
    let a = fed.axon("").await;
    let b = fed.axon("").await;
    // Synapse trusts the shared federation's CA: its Axon is the one that
    // talks to it.
    let c = synapse_fed.axon("").await;
    run("Axon -> Axon", &a, &b, rounds, burst).await;
    run("Axon -> Synapse", &c, &synapse, rounds, burst).await;
    run("Synapse -> Axon", &synapse, &c, rounds, burst).await;
}
