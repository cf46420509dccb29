//! matrix-sdk 0.18 (Element X's engine) against Axon over real HTTP:
//! tests/matrix-sdk's clients, built on first use (a package of their own:
//! see its Cargo.toml), chat in the clear and end to end encrypted.

use axon_testkit::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds tests/matrix-sdk once per run; the path of its binary.
fn sdk_clients() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target/matrix-sdk-clients");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--locked", "--manifest-path"])
            .arg(root.join("tests/matrix-sdk/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "tests/matrix-sdk builds");
        target.join("debug/axon-matrix-sdk-clients")
    })
}

/// Runs one flow to its end; its output.
async fn run(flow: &str, s: &TestServer, alice: &str, bob: &str) -> String {
    run_with(flow, s, alice, bob, &[]).await
}

/// A flow with arguments after the password (another server's base URL).
async fn run_with(flow: &str, s: &TestServer, alice: &str, bob: &str, more: &[&str]) -> String {
    let binary = tokio::task::spawn_blocking(sdk_clients).await.unwrap();
    let mut args: Vec<String> = [flow, &s.base, alice, bob, "correct horse"]
        .map(str::to_string)
        .to_vec();
    args.extend(more.iter().map(|a| a.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .expect("the clients run")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success() && stdout.contains("ok: every step passed"),
        "matrix-sdk {flow} flow failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_through_matrix_sdk() {
    let s = TestServer::start().await;
    s.register("bob").await;
    let out = run("chat", &s, "alice", "bob").await;
    assert!(out.contains("ok: @alice:test.local registered"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_sdk_users_talk_end_to_end_encrypted_and_restore_from_backup() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let out = run("e2ee", &s, "alice", "bob").await;
    let room = out
        .lines()
        .find_map(|l| l.strip_prefix("room: "))
        .expect("the flow names its room");

    // The server stored only ciphertext.
    let (status, messages) = s
        .get(
            &format!("/rooms/{}/messages?dir=b&limit=50", enc(room)),
            &bob.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = messages["chunk"].as_array().unwrap();
    let encrypted = events
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .count();
    assert!(encrypted >= 2, "{messages}");
    assert!(!events.iter().any(|e| e["type"] == "m.room.message"));
    assert!(!messages.to_string().contains("the secret is 42"));
    // Alice's backup holds the room's key; her identity is on the server.
    let (_, backup) = s.get("/room_keys/version", &alice.token).await;
    assert!(backup["count"].as_u64().unwrap() >= 1, "{backup}");
    let (_, keys) = s
        .post(
            "/keys/query",
            &bob.token,
            serde_json::json!({ "device_keys": { alice.user_id.clone(): [] } }),
        )
        .await;
    assert!(keys["master_keys"][&alice.user_id].is_object(), "{keys}");
    let devices: &Value = &keys["device_keys"][&alice.user_id];
    // The kit's login uploaded no keys: the SDK's two devices are there.
    assert_eq!(devices.as_object().unwrap().len(), 2, "{keys}");
}

/// End-to-end encryption across servers: alice on Axon, bob on Synapse,
/// each with matrix-sdk; device keys, one-time keys, room keys (to-device)
/// and device list changes all go over federation, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_sdk_users_on_axon_and_synapse_talk_end_to_end_encrypted() {
    let (fed, synapse) = axon_testkit::synapse::shared();
    let axon = fed.axon("").await;
    let alice = axon.register("alice").await;
    let synapse = synapse.client();
    let localpart = format!("bob{}", rand_suffix());
    let bob = synapse.register(&localpart).await;
    let out = run_with(
        "e2ee-federated",
        &axon,
        "alice",
        &localpart,
        &[&synapse.base],
    )
    .await;
    assert!(out.contains("ok: alice signed bob's identity"), "{out}");
    // Alice's signature of bob's master key is kept on her server, and
    // shown to her with the key his server serves.
    let (status, keys) = axon
        .post(
            "/keys/query",
            &alice.token,
            serde_json::json!({ "device_keys": { &bob.user_id: [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let signers = &keys["master_keys"][&bob.user_id]["signatures"];
    assert!(signers.get(&alice.user_id).is_some(), "{keys}");
}
