//! Element's engine against Axon: tests/js/element_flow.mjs drives two
//! matrix-js-sdk clients through what Element does, over real HTTP.
//! Needs Node.js and npm; the pinned package is installed on first run.

use crate::client_start::png;
use axon_testkit::*;
use std::path::Path;
use std::process::Command;

/// Installs tests/js's pinned packages if they are not there yet.
fn js_packages() -> &'static Path {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let dir: &'static Path = Box::leak(dir.into_boxed_path());
    if !dir.join("node_modules/matrix-js-sdk/package.json").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .expect("npm runs (Node.js and npm are needed for the matrix-js-sdk test)");
        assert!(status.success(), "npm ci in {}", dir.display());
    }
    dir
}

#[tokio::test]
async fn element_flow_through_matrix_js_sdk() {
    let dir = js_packages();
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let picture = s.dir.path().join("picture.png");
    std::fs::write(&picture, png(64, 48)).unwrap();
    let base = s.base.clone();
    let script = dir.join("element_flow.mjs");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args([
                base.as_str(),
                alice.user_id.as_str(),
                bob.user_id.as_str(),
                "correct horse",
            ])
            .arg(&picture)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with --nocapture, and on failure.
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success() && stdout.contains("ok: every step passed"),
        "matrix-js-sdk flow failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
