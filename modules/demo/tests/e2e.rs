//! The demo module of Synapse's docs, enabled from YAML in a real server.

// Name the module crate, so the linker keeps its registration.
use axon_demo as _;

use axon_testkit::*;

const DEMO: &str = "modules:\n  - module: axon_demo::DemoModule\n    config:\n      blocked_user: '@evilguy:test.local'\n";

#[tokio::test]
async fn the_configured_user_cannot_create_rooms() {
    let s = TestServer::start_with(DEMO).await;
    let evil = s.register("evilguy").await;
    let good = s.register("goodguy").await;
    let refused = s
        .post("/createRoom", &evil.token, json!({ "name": "lair" }))
        .await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.1,
        json!({ "errcode": "M_FORBIDDEN", "error": "You are not permitted to create rooms" })
    );
    let (_, rooms) = s.get("/joined_rooms", &evil.token).await;
    assert_eq!(rooms["joined_rooms"], json!([]), "nothing was created");
    assert_eq!(
        s.post("/createRoom", &good.token, json!({})).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn hello_is_served_from_the_modules_web_resource() {
    let s = TestServer::start_with(DEMO).await;
    let (status, body) = s
        .request(
            Method::GET,
            "/_synapse/client/demo/hello?name=Ada",
            None,
            None,
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "hello": "Ada" })));
    // Without the module, the path is an unknown endpoint.
    let plain = TestServer::start().await;
    assert_error(
        &plain
            .request(
                Method::GET,
                "/_synapse/client/demo/hello?name=Ada",
                None,
                None,
            )
            .await,
        404,
        "M_UNRECOGNIZED",
    );
}
