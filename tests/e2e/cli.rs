//! The `axon` binary as an operator runs it: the flags, the config errors
//! they read, start-up refusals, and no lost writes after `kill -9`.

use axon_testkit::{enc, test_config};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub(crate) const AXON: &str = env!("CARGO_BIN_EXE_axon");

fn axon(args: &[&str]) -> Output {
    Command::new(AXON).args(args).output().expect("axon runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("homeserver.yaml");
    std::fs::write(&path, test_config(dir, extra)).unwrap();
    path
}

#[test]
fn list_modules_prints_the_compiled_in_paths() {
    let out = axon(&["--list-modules"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "auto_accept_invite::InviteAutoAccepter\naxon_demo::DemoModule\ndomain_rule_checker::DomainRuleChecker\nemail_account_validity::EmailAccountValidity\nfreeze_room::FreezeRoom\nmjolnir_antispam::Module\nshared_secret_auth::SharedSecretAuthProvider\nuser_restrictions::UserRestrictionsModule\n"
    );
}

#[test]
fn list_modules_verbose_and_json_describe_each_module() {
    let out = axon(&["--list-modules", "--verbose"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let block: String = text
        .split_inclusive('\n')
        .skip_while(|l| *l != "mjolnir_antispam::Module\n")
        .take(8)
        .collect();
    assert_eq!(
        block,
        "mjolnir_antispam::Module
  crate:          mjolnir_antispam 0.1.0 (license: Apache-2.0)
  status:         stable
  description:    Enforces Mjolnir ban lists kept in list rooms' state.
  callbacks:      spam_checker: check_event_for_spam, user_may_invite, check_username_for_spam
                  third_party_rules: on_new_event
  web resources:  no
  hooks:          start
"
    );

    let out = axon(&["--list-modules", "--json"]);
    let modules: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = modules
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "sorted by path");
    let email = modules
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"] == "email_account_validity::EmailAccountValidity")
        .unwrap();
    assert_eq!(email["crate"], "email_account_validity");
    assert_eq!(email["license"], "Apache-2.0");
    assert_eq!(email["status"], "stable");
    assert_eq!(
        email["callbacks"],
        json!({ "account_validity": ["is_user_expired", "on_user_registration"] })
    );
    assert_eq!(email["web_resources"], true);
    assert_eq!(email["hooks"], json!({ "start": true, "stop": false }));
}

/// Each example is checked through the module's real config type and
/// constructor, so an example cannot drift from the code.
#[test]
fn every_bundled_module_ships_an_example_config_that_checks() {
    let out = axon(&["--list-modules", "--json"]);
    let modules: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for module in modules.as_array().unwrap() {
        let path = module["path"].as_str().unwrap();
        let example = module["example"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: add an example.yaml to its crate"));
        assert!(
            example.contains(&format!("module: {path}")),
            "{path}: {example}"
        );
        let config = write_config(dir.path(), example);
        let out = axon(&[
            "--check-config",
            "--deny-warnings",
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{path}'s example.yaml does not check:\n{}",
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("(1 module loaded)"),
            "{path}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn build_info_names_the_version_and_the_modules_baked_in() {
    let out = axon(&["--build-info"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("axon {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("8 modules compiled in:\n"), "{text}");
    assert!(
        text.contains("  freeze_room::FreezeRoom (freeze_room 0.1.0, stable)\n"),
        "{text}"
    );
}

#[test]
fn show_order_lists_each_callbacks_modules_in_the_order_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "modules:\n  - module: mjolnir_antispam::Module\n  - module: auto_accept_invite::InviteAutoAccepter\n  - module: axon_demo::DemoModule\n    enabled: false\n  - module: domain_rule_checker::DomainRuleChecker\n    config: {can_invite_if_not_in_domain_mapping: true}\n",
    );
    let out = axon(&["--show-order", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("spam_checker.user_may_invite: mjolnir_antispam::Module, domain_rule_checker::DomainRuleChecker\n"),
        "{text}"
    );
    assert!(
        text.contains("third_party_rules.on_new_event: mjolnir_antispam::Module, auto_accept_invite::InviteAutoAccepter\n"),
        "{text}"
    );
    assert!(
        !text.contains("user_may_create_room"),
        "the disabled module is left out: {text}"
    );

    let bad = write_config(dir.path(), "modules:\n  - module: nope::Nope\n");
    let out = axon(&["--show-order", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown module `nope::Nope`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_fails_on_warnings_only_when_they_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "report_stats: true\n");
    let path = path.to_str().unwrap();
    assert!(axon(&["--check-config", "--config", path]).status.success());
    let out = axon(&["--check-config", "--deny-warnings", "--config", path]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("config key `report_stats` is not supported"),
        "{err}"
    );
    assert!(
        err.contains("error: warnings are denied (--deny-warnings)"),
        "{err}"
    );

    let clean = write_config(dir.path(), "");
    assert!(axon(&[
        "--check-config",
        "--deny-warnings",
        "--config",
        clean.to_str().unwrap()
    ])
    .status
    .success());
}

#[test]
fn generate_config_writes_a_sample_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let out = axon(&["--generate-config", "--server-name", "example.org"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("server_name: \"example.org\""));
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("registration_shared_secret:"))
        .unwrap();
    assert!(secret_line.len() > 40, "a random secret: {secret_line}");

    let path = dir.path().join("new.yaml");
    let out = axon(&[
        "--generate-config",
        "--server-name",
        "example.org",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = axon(&["--check-config", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("config OK (0 modules loaded)"));

    let again = axon(&[
        "--generate-config",
        "--server-name",
        "example.org",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("exists; not overwriting it"));
    let bad = axon(&["--generate-config", "--server-name", "not a name"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("`not a name` is not a valid server name"));
}

/// `homeserver.yaml` is generated from the template (`cargo xtask codegen`
/// checks it is fresh); here, that the server accepts it.
#[test]
fn the_checked_in_sample_passes_check_config() {
    let out = axon(&[
        "--check-config",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/homeserver.yaml"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn check_config_reports_every_module_error_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "modules:\n  - module: axon_demo::DemoModul\n  - module: axon_demo::DemoModule\n    config: {blocked_user: nobody}\n",
    );
    let out = axon(&["--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("2 errors in the modules config:"), "{err}");
    assert!(err.contains("at `modules[0].module`: unknown module `axon_demo::DemoModul`; did you mean `axon_demo::DemoModule`?"), "{err}");
    assert!(
        err.contains("module `axon_demo::DemoModule` at `modules[1].config.blocked_user`:"),
        "{err}"
    );
}

#[test]
fn check_config_names_bad_keys_and_warns_about_unsupported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "report_stats: true\nmacaroon_secret_key: x\n");
    let out = axon(&["--check-config", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("config key `report_stats` is not supported by Axon and is ignored"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("config key `macaroon_secret_key` is not supported"));

    std::fs::write(
        &path,
        format!("{}\nmax_upload_size: lots\n", test_config(dir.path(), "")),
    )
    .unwrap();
    let out = axon(&["--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("at `max_upload_size`: expected a size such as `50M`"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&path, "server_name: x\nlisteners: [\n").unwrap();
    let out = axon(&["--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not valid YAML"), "{}", stderr(&out));

    let open_registration = test_config(dir.path(), "").replace(
        "enable_registration_without_verification: true",
        "enable_registration_without_verification: false",
    );
    std::fs::write(&path, open_registration).unwrap();
    let out = axon(&["--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "at `enable_registration`: You have enabled open registration without any verification"
        ),
        "{}",
        stderr(&out)
    );
}

/// A server process, the base URL it listens on, and its log up to then.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) base: String,
    startup_log: String,
}

pub(crate) fn spawn(config: &std::path::Path) -> Result<Process, String> {
    let mut command = Command::new(AXON);
    command.args(["--config", config.to_str().unwrap()]);
    spawn_command(command)
}

/// Starts the server as `command` runs it (under `ulimit`, say) and waits
/// for it to listen.
pub(crate) fn spawn_command(mut command: Command) -> Result<Process, String> {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("axon starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    while let Some(Ok(line)) = lines.next() {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(i) = line.find("listening on ") {
            let base = line[i + "listening on ".len()..].trim().to_string();
            // Keep draining stderr so the server never blocks on a full
            // pipe; the test harness shows it if the test fails.
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    eprintln!("axon: {line}");
                }
            });
            return Ok(Process {
                child,
                base,
                startup_log: seen,
            });
        }
    }
    let _ = child.wait();
    Err(seen)
}

#[test]
fn the_startup_log_lists_the_modules_loaded_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "modules:\n  - module: freeze_room::FreezeRoom\n  - module: axon_demo::DemoModule\n    enabled: false\n  - module: auto_accept_invite::InviteAutoAccepter\n",
    );
    let mut process = spawn(&path).expect("server starts");
    let log = &process.startup_log;
    let first = log.find("loaded modules[0] (`freeze_room::FreezeRoom`)");
    let second = log.find("loaded modules[2] (`auto_accept_invite::InviteAutoAccepter`)");
    assert!(
        first.is_some() && second.is_some() && first < second,
        "{log}"
    );
    assert!(
        log.contains("modules[1] is disabled (`enabled: false`)"),
        "{log}"
    );
    assert!(!log.contains("DemoModule`)"), "{log}");
    process.child.kill().unwrap();
    process.child.wait().unwrap();
}

#[test]
fn a_broken_module_config_stops_startup_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "modules:\n  - module: nowhere::Nothing\n");
    let seen = spawn(&path).err().expect("the server refuses to start");
    assert!(seen.contains("unknown module `nowhere::Nothing`"), "{seen}");
    assert!(!seen.contains("listening on"));
}

/// Registers alice on a running server and creates a room; returns her
/// token and the room.
async fn alice_and_a_room(http: &reqwest::Client, base: &str) -> (String, String) {
    let registered: serde_json::Value = http
        .post(format!("{base}/register"))
        .json(
            &json!({ "username": "alice", "password": "pw", "auth": { "type": "m.login.dummy" } }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["access_token"].as_str().unwrap().to_string();
    let room: serde_json::Value = http
        .post(format!("{base}/createRoom"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (token, room["room_id"].as_str().unwrap().to_string())
}

/// The IDs of the events stored in a room.
async fn stored_event_ids(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    room: &str,
) -> std::collections::HashSet<String> {
    let page: serde_json::Value = http
        .get(format!(
            "{base}/rooms/{}/messages?dir=b&limit=100000",
            enc(room)
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let mut process = spawn(&path).expect("server starts");
    let http = reqwest::Client::new();
    let base = format!("{}/_matrix/client/v3", process.base);
    let (token, room) = alice_and_a_room(&http, &base).await;
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let response = http
            .put(format!(
                "{base}/rooms/{}/send/m.room.message/k{i}",
                enc(&room)
            ))
            .bearer_auth(&token)
            .json(&json!({ "msgtype": "m.text", "body": format!("m{i}") }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let body: serde_json::Value = response.json().await.unwrap();
        acknowledged.push(body["event_id"].as_str().unwrap().to_string());
    }
    // SIGKILL: no shutdown hooks, no flush.
    process.child.kill().unwrap();
    process.child.wait().unwrap();

    let mut process = spawn(&path).expect("server restarts");
    let base = format!("{}/_matrix/client/v3", process.base);
    let stored = stored_event_ids(&http, &base, &token, &room).await;
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged event {id} lost");
    }
    // And the server goes on: the same transaction ID is still recognised.
    let again: serde_json::Value = http
        .put(format!(
            "{base}/rooms/{}/send/m.room.message/k49",
            enc(&room)
        ))
        .bearer_auth(&token)
        .json(&json!({ "msgtype": "m.text", "body": "m49" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["event_id"], acknowledged[49]);
    process.child.kill().unwrap();
    process.child.wait().unwrap();
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let mut process = spawn(&path).expect("server starts");
    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Clients keep sending while SIGTERM arrives: the server drains what it
/// accepted, exits 0, and every message it acknowledged is there after a
/// restart.
#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let mut process = spawn(&path).expect("server starts");
    let http = reqwest::Client::new();
    let base = format!("{}/_matrix/client/v3", process.base);
    let (token, room) = alice_and_a_room(&http, &base).await;

    let mut clients = Vec::new();
    for client in 0..8 {
        let (http, base, token, room) = (http.clone(), base.clone(), token.clone(), room.clone());
        clients.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let sent = http
                    .put(format!(
                        "{base}/rooms/{}/send/m.room.message/c{client}-{i}",
                        enc(&room)
                    ))
                    .bearer_auth(&token)
                    .json(&json!({ "msgtype": "m.text", "body": "load" }))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                // A response that came back is a whole one: 200 with an ID.
                assert!(response.status().is_success(), "{}", response.status());
                let body: serde_json::Value = response.json().await.unwrap();
                acknowledged.push(body["event_id"].as_str().unwrap().to_string());
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    assert!(
        acknowledged.len() > 8,
        "the load ran: {}",
        acknowledged.len()
    );
    let exit = tokio::task::spawn_blocking(move || process.child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    let mut process = spawn(&path).expect("server restarts");
    let base = format!("{}/_matrix/client/v3", process.base);
    let stored = stored_event_ids(&http, &base, &token, &room).await;
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {lost:?}",
        lost.len()
    );
    process.child.kill().unwrap();
    process.child.wait().unwrap();
}
