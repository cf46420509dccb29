//! A callback nobody implements costs no allocation (and, by construction,
//! takes no lock: the registry is plain data read through an `Arc`).

use axon::prelude::*;
use axon_testkit::scripted::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(|a| a.get())
}

#[test]
fn an_unimplemented_callback_does_not_allocate() {
    let loaded = load("modules:\n  - module: test.Bare\n").unwrap();
    let callbacks = loaded.callbacks.clone();
    let user = user("@alice:test.local");
    let room: OwnedRoomId = "!r:test.local".try_into().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm up anything lazily initialised.
        let _ = callbacks
            .spam_checker
            .user_may_join_room(&user, &room, false)
            .await;
        let before = allocations();
        for _ in 0..1000 {
            let verdict = callbacks
                .spam_checker
                .user_may_join_room(&user, &room, false)
                .await;
            assert_eq!(verdict, Ok(SpamCheck::NotSpam));
            let _ = callbacks.account_validity.is_user_expired(&user).await;
            callbacks
                .account_data
                .on_account_data_updated(&user, None, "m.x", &JsonObject::new())
                .await;
        }
        assert_eq!(allocations() - before, 0);
    });

    // The same counter sees the allocation a registered callback makes, so
    // the zero above is not a broken counter.
    let loaded =
        load("modules:\n  - module: test.Scripted\n    config: {log: alloc, name: a}\n").unwrap();
    rt.block_on(async {
        let before = allocations();
        let _ = loaded
            .callbacks
            .spam_checker
            .user_may_create_room(&user, &JsonObject::new())
            .await;
        assert!(allocations() > before);
    });
}
