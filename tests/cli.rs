//! The `axon` binary as an operator runs it: the flags, the config errors
//! they read, start-up refusals, and no lost writes after `kill -9`.

mod support;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::{enc, test_config};

const AXON: &str = env!("CARGO_BIN_EXE_axon");

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

#[test]
fn the_checked_in_sample_is_the_generated_one() {
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/homeserver.yaml")).unwrap();
    let generated = axon::config::generate("localhost");
    let strip = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.contains("registration_shared_secret:"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        strip(&sample),
        strip(&generated),
        "regenerate homeserver.yaml from runtime/src/config/sample.yaml"
    );
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

/// A server process and the base URL it listens on.
struct Process {
    child: Child,
    base: String,
}

fn spawn(config: &std::path::Path) -> Result<Process, String> {
    let mut child = Command::new(AXON)
        .args(["--config", config.to_str().unwrap()])
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
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Ok(Process { child, base });
        }
    }
    let _ = child.wait();
    Err(seen)
}

#[test]
fn a_broken_module_config_stops_startup_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "modules:\n  - module: nowhere::Nothing\n");
    let seen = spawn(&path).err().expect("the server refuses to start");
    assert!(seen.contains("unknown module `nowhere::Nothing`"), "{seen}");
    assert!(!seen.contains("listening on"));
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let mut process = spawn(&path).expect("server starts");
    let http = reqwest::Client::new();
    let base = format!("{}/_matrix/client/v3", process.base);
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
        .json(&json!({ "name": "durable" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = room["room_id"].as_str().unwrap().to_string();
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
    let page: serde_json::Value = http
        .get(format!(
            "{base}/rooms/{}/messages?dir=b&limit=100",
            enc(&room)
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    for id in &acknowledged {
        assert!(
            stored.contains(&id.as_str()),
            "acknowledged event {id} lost"
        );
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
