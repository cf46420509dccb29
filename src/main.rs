//! The stock Axon homeserver: the runtime and the bundled modules.
//!
//! `cargo xtask new-module` adds new module crates here;
//! `cargo xtask build-server --modules a,b` builds a homeserver with others.

axon_server::homeserver_main!(
    auto_accept_invite,
    axon_demo,
    domain_rule_checker,
    email_account_validity,
    freeze_room,
    mjolnir_antispam,
    shared_secret_auth,
    user_restrictions
);
