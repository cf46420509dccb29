//! Axon beside Synapse 1.163 on loopback, with the same settings (SQLite,
//! rate limits raised) and this same load client; each figure printed for
//! both servers and their ratio, from one run.
//!
//! `cargo bench --bench scale -- [SCENARIO [SIZE…]]… [--axon-only]`:
//! - `fanout 100 300 1000`: members long-polling one room while it gets 100
//!   messages (`fanout.rs`);
//! - `initial-sync 200`: a user in 200 rooms of 50 events, initial and
//!   incremental sync (`initial_sync.rs`);
//! - `big-room 5000`: a new member's join, `/members` and a state change in
//!   a room of 5,000 (`big_room.rs`);
//! - `idle 1000`: RSS per connected long-polling client (`idle.rs`);
//! - `modules 10`: start to ready, and sends per second, with 0 and 10 no-op
//!   modules on every hook a send passes (`modules.rs`).
//!
//! With no scenario, all of them at those sizes (over an hour with
//! Synapse). Synapse comes from PyPI into `target/synapse`, the virtualenv
//! the federation tests use (or the one `AXON_SYNAPSE_VENV` names),
//! installed on first use. Both
//! servers run as their own processes, so CPU and RSS are theirs alone; the
//! load client shares the machine's two cores.
//!
//! Axon is this binary itself, run as a homeserver: `axon_server`'s command
//! line, as in the stock binary, with the no-op module compiled in (and
//! instantiated only when a config lists it).

mod big_room;
mod fanout;
mod harness;
mod idle;
mod initial_sync;
mod modules;

use axon::prelude::*;
use harness::Kind;
use std::process::ExitCode;

/// Set in the environment of the copy of this binary that serves.
pub const SERVE_ENV: &str = "AXON_BENCH_SERVE";

/// A module on every hook a message send passes, answering "go on" at each:
/// what 10 modules cost when none of them does anything.
pub struct Noop;

#[module(name = "bench.Noop")]
impl Noop {
    fn new(_api: &ModuleApi) -> Self {
        Noop
    }

    #[callback(spam_checker)]
    async fn check_event_for_spam(&self, _event: &Event) -> SpamCheck {
        SpamCheck::NotSpam
    }

    #[callback(third_party_rules)]
    async fn check_event_allowed(&self, _event: &Event, _state: &StateMap) -> EventAllowed {
        EventAllowed::Allow
    }

    #[callback(third_party_rules)]
    async fn on_new_event(&self, _event: &Event, _state: &StateMap) {}

    #[callback(account_validity)]
    async fn is_user_expired(&self, _user: &UserId) -> Option<bool> {
        None
    }

    #[callback(ratelimit)]
    async fn get_ratelimit_override_for_user(
        &self,
        _user: &UserId,
        _limiter: &str,
    ) -> Option<RatelimitOverride> {
        None
    }

    #[callback(add_extra_fields_to_unsigned_client_event)]
    async fn add_field_to_unsigned_callback(&self, _event: &Event) -> JsonObject {
        JsonObject::new()
    }
}

fn main() -> ExitCode {
    if std::env::var_os(SERVE_ENV).is_some() {
        return axon_server::cli::main();
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let servers: &[Kind] = if args.iter().any(|a| a == "--axon-only") {
        &[Kind::Axon]
    } else {
        &[Kind::Axon, Kind::Synapse]
    };
    let mut plan: Vec<(String, Vec<usize>)> = Vec::new();
    for arg in args.iter().filter(|a| !a.starts_with("--")) {
        match (arg.parse::<usize>(), plan.last_mut()) {
            (Ok(size), Some((_, sizes))) => sizes.push(size),
            (Ok(_), None) => {
                eprintln!("a size needs a scenario before it: fanout {arg}");
                return ExitCode::FAILURE;
            }
            (Err(_), _) => plan.push((arg.clone(), Vec::new())),
        }
    }
    if plan.is_empty() {
        plan = ["fanout", "initial-sync", "big-room", "idle", "modules"]
            .map(|s| (s.to_string(), Vec::new()))
            .into();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (scenario, sizes) in plan {
        let or = |default: &[usize]| {
            if sizes.is_empty() {
                default.to_vec()
            } else {
                sizes.clone()
            }
        };
        runtime.block_on(async {
            match scenario.as_str() {
                "fanout" => fanout::run(&or(&[100, 300, 1000]), servers).await,
                "initial-sync" => initial_sync::run(&or(&[200]), servers).await,
                "big-room" => big_room::run(&or(&[5000]), servers).await,
                "idle" => idle::run(&or(&[1000]), servers).await,
                "modules" => modules::run(&or(&[10]), servers).await,
                other => {
                    eprintln!(
                        "unknown scenario {other:?}: fanout, initial-sync, big-room, idle, modules"
                    );
                    std::process::exit(2);
                }
            }
        });
    }
    ExitCode::SUCCESS
}
