//! A real Matrix client, matrix-sdk, against the real server: two users
//! register or log in, create a room, invite, join, and see each other's
//! messages arrive through sync.

use axon_testkit::TestServer;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::account::register::v3::Request as RegisterRequest;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::api::client::uiaa::{AuthData, Dummy};
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};
use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::{Client, RoomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn client(server: &TestServer) -> Client {
    Client::builder()
        .homeserver_url(&server.base)
        .build()
        .await
        .expect("client builds")
}

/// Collects the text of every message the client sees through sync.
fn collect_messages(client: &Client) -> Arc<Mutex<Vec<(String, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    client.add_event_handler(move |event: OriginalSyncRoomMessageEvent| {
        let sink = sink.clone();
        async move {
            sink.lock()
                .unwrap()
                .push((event.sender.to_string(), event.content.body().to_string()));
        }
    });
    seen
}

async fn sync_until(client: &Client, what: &str, mut done: impl FnMut() -> bool) {
    let settings = SyncSettings::default().timeout(Duration::from_millis(500));
    for _ in 0..40 {
        client
            .sync_once(settings.clone())
            .await
            .expect("sync succeeds");
        if done() {
            return;
        }
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_through_matrix_sdk() {
    let server = TestServer::start().await;

    // Alice registers through the SDK (m.login.dummy), Bob logs in.
    let alice = client(&server).await;
    let mut register = RegisterRequest::new();
    register.username = Some("alice".into());
    register.password = Some("alice's password".into());
    register.auth = Some(AuthData::Dummy(Dummy::new()));
    let registered = alice
        .matrix_auth()
        .register(register)
        .await
        .expect("alice registers");
    assert_eq!(registered.user_id.as_str(), "@alice:test.local");
    assert_eq!(
        alice.user_id().map(|u| u.as_str()),
        Some("@alice:test.local"),
        "logged in by registering"
    );

    server.register("bob").await;
    let bob = client(&server).await;
    bob.matrix_auth()
        .login_username("bob", "correct horse")
        .initial_device_display_name("bob's sdk")
        .send()
        .await
        .expect("bob logs in");
    let bob_id: OwnedUserId = "@bob:test.local".try_into().unwrap();

    let alice_seen = collect_messages(&alice);
    let bob_seen = collect_messages(&bob);
    alice.sync_once(SyncSettings::default()).await.unwrap();
    bob.sync_once(SyncSettings::default()).await.unwrap();

    // Alice creates a room and invites Bob.
    let mut create = CreateRoomRequest::new();
    create.name = Some("SDK room".into());
    create.invite = vec![bob_id.clone()];
    let room = alice.create_room(create).await.expect("room created");
    let room_id = room.room_id().to_owned();

    // Bob sees the invite and joins.
    sync_until(&bob, "the invite", || {
        bob.get_room(&room_id)
            .is_some_and(|r| r.state() == RoomState::Invited)
    })
    .await;
    bob.join_room_by_id(&room_id).await.expect("bob joins");

    // Alice sends; Bob's sync delivers it.
    sync_until(&alice, "bob's join", || alice.get_room(&room_id).is_some()).await;
    let alice_room = alice.get_room(&room_id).unwrap();
    alice_room
        .send(RoomMessageEventContent::text_plain("hello bob"))
        .await
        .expect("alice sends");
    sync_until(&bob, "alice's message", || {
        bob_seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, body)| body == "hello bob")
    })
    .await;
    assert!(bob_seen
        .lock()
        .unwrap()
        .contains(&("@alice:test.local".to_string(), "hello bob".to_string())));

    // Bob answers; Alice's sync delivers it.
    let bob_room = bob.get_room(&room_id).expect("bob has the room");
    assert_eq!(bob_room.state(), RoomState::Joined);
    bob_room
        .send(RoomMessageEventContent::text_plain("hi alice"))
        .await
        .expect("bob sends");
    sync_until(&alice, "bob's answer", || {
        alice_seen
            .lock()
            .unwrap()
            .iter()
            .any(|(sender, body)| sender == "@bob:test.local" && body == "hi alice")
    })
    .await;
    assert_eq!(bob_room.name().as_deref(), Some("SDK room"));
}
