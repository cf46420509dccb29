//! End-to-end tests of the stock homeserver over real HTTP, in one test
//! binary (one link instead of one per file). The bundled modules' own tests
//! live in their crates (`modules/*/tests`).

// Name the bundled module crates, so the linker keeps their registrations
// (as the stock binary's main.rs does).
use auto_accept_invite as _;
use axon_demo as _;
use domain_rule_checker as _;
use email_account_validity as _;
use freeze_room as _;
use mjolnir_antispam as _;
use shared_secret_auth as _;
use user_restrictions as _;

mod accounts;
mod admin_users;
mod api_modules;
mod bad_input;
mod callbacks_other;
mod callbacks_spam;
mod cli;
mod client_start;
mod config_schema;
mod context;
mod cross_signing;
mod devices;
mod directory_profile_media;
mod federation;
mod fuzz;
mod guests;
mod ignored_users;
mod js_sdk;
mod key_backup;
mod keys;
mod knock;
mod legacy;
mod linked_modules;
mod matrix_sdk;
mod metrics;
mod module_api;
mod notifications;
mod push_rules;
mod pushers;
mod receipts;
mod redactions;
mod relations;
mod room_lookups;
mod room_versions;
mod rooms;
mod search;
mod security;
mod server_keys;
mod services;
mod spaces;
mod status_page;
mod sync;
mod tags;
mod thumbnails;
mod to_device;
mod typing;
mod upgrade;
mod visibility;
mod with_synapse;
