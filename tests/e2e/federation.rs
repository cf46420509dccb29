//! Federation between Axon servers and the transport under it: the TLS
//! listener other servers connect to, signed requests both ways, other
//! servers' keys fetched and cached.

use axon_testkit::tls::TestCa;
use axon_testkit::*;

/// A listener serving federation over TLS, with a certificate from `ca`.
fn tls_listener(ca: &TestCa, name: &str) -> String {
    let issued = ca.issue(name);
    format!(
        "listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
  - port: 0
    tls: true
    bind_addresses: ['127.0.0.1']
    resources: [{{names: [federation]}}]
tls_certificate_path: {}
tls_private_key_path: {}",
        issued.certificate.display(),
        issued.key.display()
    )
}

#[tokio::test]
async fn the_federation_listener_speaks_tls_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let s = TestServer::start_with(&tls_listener(&ca, "axon")).await;
    let tls_addr = s.server.as_ref().unwrap().addrs[1];
    let url = format!("https://{tls_addr}/_matrix/key/v2/server");
    let response = ca.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["server_name"], "test.local");
    // A client that does not trust the CA refuses the certificate; plain
    // HTTP gets no answer from a TLS port.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .unwrap();
    let refused = untrusting.get(&url).send().await.unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");
    let plain = reqwest::get(format!("http://{tls_addr}/_matrix/key/v2/server")).await;
    assert!(plain.is_err(), "{plain:?}");
    // The client listener stays plain HTTP.
    let (status, _) = s.get("/_matrix/client/versions", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_tls_listener_without_its_certificate_or_with_a_broken_one_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let tls_only = "listeners:
  - port: 0
    tls: true
    bind_addresses: ['127.0.0.1']
    resources: [{names: [client, federation]}]";
    let problems = axon_server::config::HomeserverConfig::parse(&merged(
        &test_config(dir.path(), ""),
        tls_only,
    ))
    .unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        text,
        [
            "at `tls_certificate_path`: listeners[0] has `tls: true`, which needs `tls_certificate_path` (a PEM file)",
            "at `tls_private_key_path`: listeners[0] has `tls: true`, which needs `tls_private_key_path` (a PEM file)",
        ]
    );
    let ca = TestCa::new(&dir.path().join("ca"));
    let issued = ca.issue("axon");
    let other = ca.issue("other");
    // A key that is not the certificate's.
    let mismatched = format!(
        "{tls_only}\ntls_certificate_path: {}\ntls_private_key_path: {}",
        issued.certificate.display(),
        other.key.display()
    );
    let error = start_error(&merged(&test_config(dir.path(), ""), &mismatched)).await;
    assert!(
        error.contains("tls_private_key_path:")
            && error.contains("does not go with tls_certificate_path"),
        "{error}"
    );
    // A certificate file that is not PEM.
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let broken = format!(
        "{tls_only}\ntls_certificate_path: {}\ntls_private_key_path: {}",
        garbage.display(),
        issued.key.display()
    );
    let error = start_error(&merged(&test_config(dir.path(), ""), &broken)).await;
    assert!(
        error.contains("tls_certificate_path:") && error.contains("holds no PEM certificate"),
        "{error}"
    );
}
