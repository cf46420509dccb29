//! Dispatch cost: a callback nobody implements, one no-op implementation,
//! and ten no-op implementations across ten modules (all allow, so all ten
//! run). Each sample awaits the dispatcher `iters` times inside one
//! `block_on`, so the runtime's own entry cost is not counted.

use axon::callbacks::Callbacks;
use axon::module::{LoadedModules, ServerInfo};
use axon::prelude::*;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use std::time::Instant;

pub struct Noop;

#[module(name = "bench.Noop")]
impl Noop {
    fn new(_api: &ModuleApi) -> Self {
        Noop
    }

    #[callback(spam_checker)]
    async fn user_may_join_room(
        &self,
        _user: &UserId,
        _room: &RoomId,
        _is_invited: bool,
    ) -> SpamCheck {
        SpamCheck::NotSpam
    }
}

fn callbacks(modules: usize) -> Arc<Callbacks> {
    let yaml = format!("modules:\n{}", "  - module: bench.Noop\n".repeat(modules));
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let server = ServerInfo {
        server_name: "bench.local".try_into().unwrap(),
        public_baseurl: "http://127.0.0.1/".into(),
        measure_callbacks: false,
    };
    LoadedModules::load(doc.get("modules"), server)
        .unwrap()
        .callbacks
}

async fn trivial(_user: &UserId, _room: &RoomId, _is_invited: bool) -> Result<SpamCheck, ()> {
    Ok(SpamCheck::NotSpam)
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let user: OwnedUserId = "@alice:bench.local".try_into().unwrap();
    let room: OwnedRoomId = "!room:bench.local".try_into().unwrap();
    let mut group = c.benchmark_group("spam_checker.user_may_join_room");
    group.bench_function("baseline: a trivial async fn", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let verdict = trivial(black_box(&user), black_box(&room), false).await;
                    black_box(verdict).ok();
                }
                start.elapsed()
            })
        })
    });
    for modules in [0, 1, 10] {
        let callbacks = callbacks(modules);
        group.bench_function(format!("{modules} modules"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let verdict = callbacks
                            .spam_checker
                            .user_may_join_room(black_box(&user), black_box(&room), false)
                            .await;
                        black_box(verdict).ok();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
