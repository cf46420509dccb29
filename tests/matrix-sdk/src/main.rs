//! matrix-sdk clients driven against a running Axon by tests/e2e/matrix_sdk.rs.
//!
//! `chat <base> <alice> <bob> <password>`: alice registers through the SDK
//! (m.login.dummy), bob (already registered) logs in; a room, an invite, a
//! join, messages both ways.
//!
//! `e2ee <base> <alice> <bob> <password>`: both log in with end-to-end
//! encryption (cross-signing bootstrapped by the SDK at login), alice turns
//! on recovery (secret storage and key backup), they talk in an encrypted
//! room and each decrypts the other; bob sees alice's device cross-signed;
//! a second device of alice's recovers with the recovery key and decrypts
//! the history from the key backup. Prints the encrypted room's ID last.
//!
//! `e2ee-federated <base> <alice> <bob> <password> <bob's base>`: alice on
//! one server, bob on another (Synapse), both with end-to-end encryption;
//! alice's encrypted room, bob invited across servers; each decrypts the
//! other (device keys queried, one-time keys claimed and room keys sent as
//! to-device messages, all over federation); bob sees alice's device
//! cross-signed.
//!
//! Every step prints `ok: …`; a failure panics (non-zero exit).

use matrix_sdk::config::SyncSettings;
use matrix_sdk::encryption::{BackupDownloadStrategy, EncryptionSettings};
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::api::client::account::register::v3::Request as RegisterRequest;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::api::client::uiaa::{AuthData, Dummy};
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId};
use matrix_sdk::{Client, RoomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Args {
    base: String,
    alice: String,
    bob: String,
    password: String,
    /// Bob's server, when it is another one.
    bob_base: Option<String>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let bob_base = (argv.len() == 6).then(|| argv.remove(5));
    let [mode, base, alice, bob, password] = <[String; 5]>::try_from(argv)
        .expect("usage: chat|e2ee|e2ee-federated <base> <alice> <bob> <password> [bob's base]");
    let args = Args {
        base,
        alice,
        bob,
        password,
        bob_base,
    };
    // Bounded: a client waiting on something that never comes stops here.
    let flow = async {
        match mode.as_str() {
            "chat" => chat(&args).await,
            "e2ee" => e2ee(&args).await,
            "e2ee-federated" => e2ee_federated(&args).await,
            other => panic!("unknown flow {other}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(240), flow)
        .await
        .expect("the flow finished within 240 s");
    println!("ok: every step passed");
}

async fn client(base: &str, encryption: bool) -> Client {
    let mut builder = Client::builder().homeserver_url(base);
    if encryption {
        builder = builder.with_encryption_settings(EncryptionSettings {
            auto_enable_cross_signing: true,
            backup_download_strategy: BackupDownloadStrategy::AfterDecryptionFailure,
            auto_enable_backups: true,
        });
    }
    builder.build().await.expect("client builds")
}

async fn login(base: &str, user: &str, password: &str, device: &str) -> Client {
    let client = client(base, true).await;
    client
        .matrix_auth()
        .login_username(user, password)
        .initial_device_display_name(device)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"));
    client
}

/// Collects `(sender, body)` of every message the client sees through sync
/// (decrypted, when it could decrypt them).
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
    for _ in 0..60 {
        client
            .sync_once(settings.clone())
            .await
            .unwrap_or_else(|e| panic!("sync while waiting for {what}: {e}"));
        if done() {
            println!("ok: {what}");
            return;
        }
    }
    panic!("timed out waiting for {what}");
}

fn saw(seen: &Mutex<Vec<(String, String)>>, sender: &str, body: &str) -> bool {
    seen.lock()
        .unwrap()
        .iter()
        .any(|(s, b)| s == sender && b == body)
}

fn user_id(base_user: &str, client: &Client) -> OwnedUserId {
    let server = client
        .user_id()
        .expect("logged in")
        .server_name()
        .to_owned();
    format!("@{base_user}:{server}").try_into().unwrap()
}

async fn chat(args: &Args) {
    let alice = client(&args.base, false).await;
    let mut register = RegisterRequest::new();
    register.username = Some(args.alice.clone());
    register.password = Some(args.password.clone());
    register.auth = Some(AuthData::Dummy(Dummy::new()));
    let registered = alice
        .matrix_auth()
        .register(register)
        .await
        .expect("alice registers");
    assert_eq!(
        alice.user_id(),
        Some(registered.user_id.as_ref()),
        "logged in by registering"
    );
    println!("ok: {} registered and logged in", registered.user_id);
    let alice_id = registered.user_id;

    let bob = client(&args.base, false).await;
    bob.matrix_auth()
        .login_username(&args.bob, &args.password)
        .initial_device_display_name("bob's sdk")
        .send()
        .await
        .expect("bob logs in");
    let bob_id = user_id(&args.bob, &bob);

    let alice_seen = collect_messages(&alice);
    let bob_seen = collect_messages(&bob);
    alice.sync_once(SyncSettings::default()).await.unwrap();
    bob.sync_once(SyncSettings::default()).await.unwrap();

    let mut create = CreateRoomRequest::new();
    create.name = Some("SDK room".into());
    create.invite = vec![bob_id.clone()];
    let room = alice.create_room(create).await.expect("room created");
    let room_id = room.room_id().to_owned();

    sync_until(&bob, "bob sees the invite", || {
        bob.get_room(&room_id)
            .is_some_and(|r| r.state() == RoomState::Invited)
    })
    .await;
    bob.join_room_by_id(&room_id).await.expect("bob joins");

    sync_until(&alice, "alice has the room", || {
        alice.get_room(&room_id).is_some()
    })
    .await;
    alice
        .get_room(&room_id)
        .unwrap()
        .send(RoomMessageEventContent::text_plain("hello bob"))
        .await
        .expect("alice sends");
    sync_until(&bob, "bob gets alice's message", || {
        saw(&bob_seen, alice_id.as_str(), "hello bob")
    })
    .await;

    let bob_room = bob.get_room(&room_id).expect("bob has the room");
    assert_eq!(bob_room.state(), RoomState::Joined);
    bob_room
        .send(RoomMessageEventContent::text_plain("hi alice"))
        .await
        .expect("bob sends");
    sync_until(&alice, "alice gets bob's answer", || {
        saw(&alice_seen, bob_id.as_str(), "hi alice")
    })
    .await;
    assert_eq!(bob_room.name().as_deref(), Some("SDK room"));
}

/// The bodies of the room's messages a client can read by scrolling back
/// (decrypted if it has the keys), oldest first.
async fn history(client: &Client, room_id: &OwnedRoomId) -> Vec<String> {
    let room = client.get_room(room_id).expect("the room is known");
    let messages = room
        .messages(MessagesOptions::backward())
        .await
        .expect("/messages");
    let mut bodies: Vec<String> = messages
        .chunk
        .iter()
        .filter(|e| {
            e.raw()
                .get_field::<String>("type")
                .ok()
                .flatten()
                .as_deref()
                == Some("m.room.message")
        })
        .filter_map(|e| {
            e.raw()
                .get_field::<RoomMessageEventContent>("content")
                .ok()
                .flatten()
                .map(|c| c.body().to_string())
        })
        .collect();
    bodies.reverse();
    bodies
}

async fn e2ee(args: &Args) {
    let alice = login(&args.base, &args.alice, &args.password, "alice's laptop").await;
    let bob = login(&args.base, &args.bob, &args.password, "bob's phone").await;
    let alice_id = user_id(&args.alice, &alice);
    for (name, client) in [("alice", &alice), ("bob", &bob)] {
        client.sync_once(SyncSettings::default()).await.unwrap();
        client
            .encryption()
            .wait_for_e2ee_initialization_tasks()
            .await;
        let status = client
            .encryption()
            .cross_signing_status()
            .await
            .expect("the client has an encryption machine");
        assert!(
            status.is_complete(),
            "{name}'s cross-signing was bootstrapped: {status:?}"
        );
        println!("ok: {name} logged in with keys uploaded and cross-signing bootstrapped");
    }

    // Recovery: secret storage holding the cross-signing and backup keys,
    // and a key backup on the server.
    let recovery_key = alice
        .encryption()
        .recovery()
        .enable()
        .wait_for_backups_to_upload()
        .await
        .expect("alice enables recovery");
    println!("ok: alice enabled recovery (secret storage and key backup)");

    let room_id = talk_encrypted(&alice, &bob, "the secret is 42", "and mine is 7").await;

    // Bob trusts what alice's identity vouches for.
    wait_until_cross_signed(&bob, &alice).await;
    assert!(bob
        .encryption()
        .get_user_identity(&alice_id)
        .await
        .unwrap()
        .is_some());
    println!("ok: bob sees alice's device as cross-signed by her identity");

    // Alice's room key reaches the backup; a new device of hers restores it.
    alice
        .encryption()
        .backups()
        .wait_for_steady_state()
        .await
        .expect("alice's backup uploads");
    let second = login(&args.base, &args.alice, &args.password, "alice's new phone").await;
    second.sync_once(SyncSettings::default()).await.unwrap();
    second
        .encryption()
        .wait_for_e2ee_initialization_tasks()
        .await;
    let before = history(&second, &room_id).await;
    assert!(
        !before.iter().any(|b| b == "the secret is 42"),
        "a new device cannot read the history before recovery: {before:?}"
    );
    second
        .encryption()
        .recovery()
        .recover(&recovery_key)
        .await
        .expect("the new device recovers with the recovery key");
    second
        .encryption()
        .backups()
        .download_room_keys_for_room(&room_id)
        .await
        .expect("room keys download from the backup");
    let after = history(&second, &room_id).await;
    assert!(
        after.iter().any(|b| b == "the secret is 42") && after.iter().any(|b| b == "and mine is 7"),
        "the new device reads the history from the key backup: {after:?}"
    );
    println!("ok: alice's new device decrypts the history restored from key backup");
    let own = second
        .encryption()
        .get_own_device()
        .await
        .unwrap()
        .expect("own device");
    assert!(
        own.is_cross_signed_by_owner(),
        "the recovered device signed itself"
    );
    println!("ok: the recovered device is cross-signed");
    println!("room: {room_id}");
}

async fn e2ee_federated(args: &Args) {
    let bob_base = args.bob_base.as_deref().expect("bob's server is given");
    let alice = login(&args.base, &args.alice, &args.password, "alice's laptop").await;
    let bob = login(bob_base, &args.bob, &args.password, "bob's phone").await;
    let bob_id = bob.user_id().expect("logged in").to_owned();
    for client in [&alice, &bob] {
        client.sync_once(SyncSettings::default()).await.unwrap();
        client
            .encryption()
            .wait_for_e2ee_initialization_tasks()
            .await;
    }
    println!("ok: alice and bob logged in on their servers with keys uploaded");

    talk_encrypted(&alice, &bob, "across servers, 42", "and back, 7").await;
    wait_until_cross_signed(&bob, &alice).await;
    println!("ok: bob sees alice's device cross-signed, from the other server");

    // Alice verifies bob's identity: her user-signing key signs his master
    // key, which lives on his server.
    let bob_identity = alice
        .encryption()
        .request_user_identity(&bob_id)
        .await
        .expect("bob's identity is asked of his server")
        .expect("bob has an identity");
    bob_identity
        .verify()
        .await
        .expect("alice signs bob's master key");
    println!("ok: alice signed bob's identity across servers");
}

/// Alice makes an encrypted room and invites bob, who joins; she says
/// `first`, he decrypts it and says `answer`, which she decrypts. The room.
async fn talk_encrypted(alice: &Client, bob: &Client, first: &str, answer: &str) -> OwnedRoomId {
    let alice_id = alice.user_id().expect("logged in").to_owned();
    let bob_id = bob.user_id().expect("logged in").to_owned();
    let alice_seen = collect_messages(alice);
    let bob_seen = collect_messages(bob);
    let mut create = CreateRoomRequest::new();
    create.invite = vec![bob_id.clone()];
    let room = alice.create_room(create).await.expect("room created");
    room.enable_encryption().await.expect("encryption enabled");
    let room_id = room.room_id().to_owned();
    sync_until(bob, "bob sees the invite", || {
        bob.get_room(&room_id)
            .is_some_and(|r| r.state() == RoomState::Invited)
    })
    .await;
    bob.join_room_by_id(&room_id).await.expect("bob joins");
    sync_until(alice, "alice sees bob join", || {
        alice
            .get_room(&room_id)
            .is_some_and(|r| r.joined_members_count() == 2)
    })
    .await;
    sync_until(bob, "bob sees the room encrypted", || {
        bob.get_room(&room_id)
            .is_some_and(|r| r.encryption_state().is_encrypted())
    })
    .await;
    room.send(RoomMessageEventContent::text_plain(first))
        .await
        .expect("alice sends, encrypted");
    sync_until(bob, "bob decrypts alice's message", || {
        saw(&bob_seen, alice_id.as_str(), first)
    })
    .await;
    bob.get_room(&room_id)
        .unwrap()
        .send(RoomMessageEventContent::text_plain(answer))
        .await
        .expect("bob answers, encrypted");
    sync_until(alice, "alice decrypts bob's answer", || {
        saw(&alice_seen, bob_id.as_str(), answer)
    })
    .await;
    room_id
}

/// Waits until bob sees alice's device cross-signed by her identity.
async fn wait_until_cross_signed(bob: &Client, alice: &Client) {
    let alice_id = alice.user_id().expect("logged in").to_owned();
    let alice_device = alice.device_id().expect("logged in").to_owned();
    for _ in 0..20 {
        let device = bob
            .encryption()
            .get_device(&alice_id, &alice_device)
            .await
            .expect("bob's crypto store");
        if device.is_some_and(|d| d.is_cross_signed_by_owner()) {
            return;
        }
        bob.sync_once(SyncSettings::default().timeout(Duration::from_millis(300)))
            .await
            .unwrap();
    }
    panic!("bob sees alice's device cross-signed by alice");
}
