//! What Element asks on start-up: the well-known, `/versions` (only what
//! exists), TURN servers, third-party protocols, OpenID tokens, whois, and
//! where each device was last seen.

use axon_server::api::discovery::{SPEC_VERSIONS, UNSTABLE_FEATURES};
use axon_testkit::*;
use reqwest::Method;
use serde_json::json;

/// A small PNG, as a client uploads one.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgba8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

pub async fn upload(s: &TestServer, token: &str, content_type: &str, bytes: Vec<u8>) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", s.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["content_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mxc://")
        .to_string()
}

#[tokio::test]
async fn versions_advertise_only_what_exists() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let room = s.create_room(&alice, json!({})).await;
    let event = s.send_text(&alice, &room, "hello").await;
    let mxc = upload(&s, &alice.token, "image/png", png(40, 30)).await;
    let (server, media) = mxc.split_once('/').unwrap();

    let (status, body) = s
        .request(Method::GET, "/_matrix/client/versions", None, None)
        .await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        SPEC_VERSIONS.iter().map(|(v, _)| *v).collect::<Vec<_>>()
    );
    assert!(listed.contains(&"v1.11"), "{body}");
    for (feature, _) in UNSTABLE_FEATURES {
        assert_eq!(body["unstable_features"][feature], true, "{body}");
    }

    // Every endpoint a listed version or feature makes clients call answers.
    let endpoints = SPEC_VERSIONS
        .iter()
        .chain(UNSTABLE_FEATURES)
        .flat_map(|(_, endpoints)| endpoints.iter());
    for endpoint in endpoints {
        let (method, path) = endpoint.split_once(' ').unwrap();
        let path = path
            .replace("{room}", &enc(&room))
            .replace("{event}", &enc(&event))
            .replace("{server}", server)
            .replace("{media}", media);
        let query = if path.contains("timestamp_to_event") {
            "?ts=0&dir=f"
        } else if path.contains("thumbnail") {
            "?width=32&height=32"
        } else {
            ""
        };
        let (status, answer) = s
            .request(
                method.parse().unwrap(),
                &format!("{path}{query}"),
                Some(&alice.token),
                (method == "POST").then(|| json!({})),
            )
            .await;
        assert!(
            status.is_success(),
            "{endpoint} is advertised but answers {status} {answer}"
        );
    }
}

#[tokio::test]
async fn well_known_names_the_public_base_url_and_extra_content() {
    let s = TestServer::start_with(
        "public_baseurl: https://matrix.example.org
default_identity_server: https://id.example.org
extra_well_known_client_content:
  org.example.custom: {enabled: true}
  m.tile_server: {map_style_url: https://tiles.example.org/style.json}",
    )
    .await;
    let response = reqwest::get(format!("{}/.well-known/matrix/client", s.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "m.homeserver": { "base_url": "https://matrix.example.org/" },
            "m.identity_server": { "base_url": "https://id.example.org" },
            "org.example.custom": { "enabled": true },
            "m.tile_server": { "map_style_url": "https://tiles.example.org/style.json" },
        })
    );
}

#[tokio::test]
async fn well_known_config_errors_name_the_key() {
    let yaml = test_config(
        tempfile::tempdir().unwrap().path(),
        "extra_well_known_client_content: {m.homeserver: {base_url: https://x}}",
    );
    let problems = axon_server::config::HomeserverConfig::parse(&yaml).unwrap_err();
    assert_eq!(
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        ["at `extra_well_known_client_content.m.homeserver`: `m.homeserver` comes from `public_baseurl`; set that key instead"]
    );
}

#[tokio::test]
async fn turn_credentials_are_hmac_of_expiry_and_user() {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let s = TestServer::start_with(
        "turn_uris: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349']
turn_shared_secret: s3cret
turn_user_lifetime: 2h",
    )
    .await;
    let alice = s.register("alice").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, body) = s.get("/voip/turnServer", &alice.token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ttl"], 7200);
    assert_eq!(
        body["uris"],
        json!([
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:5349"
        ])
    );
    let username = body["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.user_id);
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (before + 7200..=before + 7202).contains(&expiry),
        "{expiry}"
    );
    // What a TURN server (coturn's use-auth-secret) computes to check it.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(body["password"], expected);

    assert_error(
        &s.request(Method::GET, "/voip/turnServer", None, None).await,
        401,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn turn_with_fixed_credentials_or_none() {
    let s = TestServer::start_with(
        "turn_uris: ['turn:turn.example.org']
turn_username: axon
turn_password: hunter2",
    )
    .await;
    let alice = s.register("alice").await;
    let (status, body) = s.get("/voip/turnServer", &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "username": "axon", "password": "hunter2", "ttl": 3600, "uris": ["turn:turn.example.org"] })
    );

    // No TURN server configured: an empty answer, as Synapse gives.
    let plain = TestServer::start().await;
    let bob = plain.register("bob").await;
    assert_eq!(
        plain.get("/voip/turnServer", &bob.token).await,
        (reqwest::StatusCode::OK, json!({}))
    );
}

#[tokio::test]
async fn thirdparty_protocols_are_none_without_bridges() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    assert_eq!(
        s.get("/thirdparty/protocols", &alice.token).await,
        (reqwest::StatusCode::OK, json!({}))
    );
    assert_error(
        &s.get("/thirdparty/protocol/irc", &alice.token).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.request(Method::GET, "/thirdparty/protocols", None, None)
            .await,
        401,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn openid_tokens_prove_who_the_user_is() {
    let s = TestServer::start_with(
        "listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
    resources: [{names: [client, openid]}]",
    )
    .await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let path = format!("/user/{}/openid/request_token", enc(&alice.user_id));
    let (status, token) = s.post(&path, &alice.token, json!({})).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], "test.local");
    assert_eq!(token["expires_in"], 3600);
    let access = token["access_token"].as_str().unwrap();
    assert_ne!(access, alice.token);

    // The integration manager asks whose it is.
    let userinfo = format!("/_matrix/federation/v1/openid/userinfo?access_token={access}");
    assert_eq!(
        s.request(Method::GET, &userinfo, None, None).await,
        (reqwest::StatusCode::OK, json!({ "sub": alice.user_id }))
    );
    assert_error(
        &s.request(
            Method::GET,
            "/_matrix/federation/v1/openid/userinfo?access_token=nope",
            None,
            None,
        )
        .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &s.request(
            Method::GET,
            "/_matrix/federation/v1/openid/userinfo",
            None,
            None,
        )
        .await,
        401,
        "M_MISSING_TOKEN",
    );
    // An OpenID token is not an access token.
    assert_error(
        &s.get("/account/whoami", access).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // Nobody gets a token for someone else.
    assert_error(
        &s.post(&path, &bob.token, json!({})).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn openid_userinfo_needs_the_openid_resource() {
    let s = TestServer::start().await;
    assert_error(
        &s.request(
            Method::GET,
            "/_matrix/federation/v1/openid/userinfo?access_token=x",
            None,
            None,
        )
        .await,
        404,
        "M_UNRECOGNIZED",
    );
}

async fn get_with_agent(s: &TestServer, path: &str, token: &str, agent: &str) {
    let response = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3{path}", s.base))
        .bearer_auth(token)
        .header("user-agent", agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Sightings are written in the background: wait until one shows.
async fn whois_until(
    s: &TestServer,
    asker: &str,
    user: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..100 {
        let (status, body) = s.get(&format!("/admin/whois/{}", enc(user)), asker).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("whois never showed the connection");
}

#[tokio::test]
async fn whois_and_devices_show_where_each_device_was_seen() {
    let s = TestServer::start().await;
    let admin = register_admin(&s, "admin").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    get_with_agent(&s, "/account/whoami", &alice.token, "Element/1.11 (test)").await;
    let body = whois_until(&s, &alice.token, &alice.user_id, |b| {
        b["devices"][&alice.device_id]["sessions"][0]["connections"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    })
    .await;
    assert_eq!(body["user_id"], alice.user_id);
    let connections = &body["devices"][&alice.device_id]["sessions"][0]["connections"];
    let element = connections
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["user_agent"] == "Element/1.11 (test)")
        .unwrap_or_else(|| panic!("{connections}"));
    assert_eq!(element["ip"], "127.0.0.1");
    let seen = element["last_seen"].as_i64().unwrap();
    assert!(seen > 1_600_000_000_000, "{seen}");

    // GET /devices reports the same sighting.
    let (_, devices) = s.get("/devices", &alice.token).await;
    let device = &devices["devices"][0];
    assert_eq!(device["last_seen_ip"], "127.0.0.1");
    assert!(device["last_seen_ts"].as_i64().unwrap() >= seen);

    // An admin may ask about anyone; through Synapse's admin path too.
    let (status, by_admin) = s
        .get(
            &format!("/_synapse/admin/v1/whois/{}", enc(&alice.user_id)),
            &admin.token,
        )
        .await;
    assert_eq!(status, 200, "{by_admin}");
    assert!(by_admin["devices"][&alice.device_id].is_object());
    // Others may not.
    assert_error(
        &s.get(&format!("/admin/whois/{}", enc(&alice.user_id)), &bob.token)
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get("/admin/whois/@nobody:test.local", &admin.token).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get("/admin/whois/@someone:elsewhere.org", &admin.token)
            .await,
        400,
        "M_UNKNOWN",
    );
    assert_error(
        &s.get("/admin/whois/not-a-user", &admin.token).await,
        400,
        "M_INVALID_PARAM",
    );

    // A deleted device is forgotten with where it was seen.
    let (_, _) = s
        .request(Method::POST, "/logout", Some(&alice.token), Some(json!({})))
        .await;
    let after = whois_until(&s, &admin.token, &alice.user_id, |b| {
        b["devices"].as_object().is_some_and(|d| d.is_empty())
    })
    .await;
    assert_eq!(after["devices"], json!({}));
}
