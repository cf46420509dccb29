//! Synapse as the peer: one Synapse 1.163 for the whole binary
//! (`axon_testkit::synapse::shared`), a fresh Axon per test, each named
//! `127.0.0.1:PORT` and trusting the same test CA.

use axon_testkit::synapse::shared;
use axon_testkit::*;

/// A user of the shared Synapse with a name no other test uses.
async fn synapse_user(name: &str) -> User {
    let (_, synapse) = shared();
    synapse
        .client
        .register(&format!("{name}{}", rand_suffix()))
        .await
}

async fn set_displayname(s: &TestServer, user: &User, name: &str) {
    let path = format!("/profile/{}/displayname", enc(&user.user_id));
    let (status, body) = s
        .put(&path, &user.token, json!({ "displayname": name }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn profiles_are_read_across_axon_and_synapse_both_ways() {
    let (fed, synapse) = shared();
    let axon = fed.axon("").await;
    let alice = axon.register("alice").await;
    set_displayname(&axon, &alice, "Alice on Axon").await;
    let bob = synapse_user("bob").await;
    set_displayname(&synapse.client, &bob, "Bob on Synapse").await;

    let (status, body) = axon
        .get(&format!("/profile/{}", enc(&bob.user_id)), &alice.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log_tail());
    assert_eq!(body["displayname"], "Bob on Synapse");

    let (status, body) = synapse
        .client
        .get(&format!("/profile/{}", enc(&alice.user_id)), &bob.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log_tail());
    assert_eq!(body["displayname"], "Alice on Axon");
}
