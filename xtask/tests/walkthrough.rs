//! The xtask subcommands as the README walks through them, run against a
//! temporary copy of the workspace (they write files). These builds share a
//! build directory of their own (`target/xtask-tests`): cargo names a path
//! crate's artifacts the same wherever it lives, so sharing this
//! workspace's would overwrite its artifacts with the copy's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn copy_workspace(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if matches!(name.as_ref(), "target" | ".git" | "data") {
            continue;
        }
        let dest = to.join(&*name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_workspace(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Runs cargo in `dir`; binaries go to `dir/../target`.
fn cargo(dir: &Path, args: &[&str]) -> Output {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .env("CARGO_BUILD_BUILD_DIR", repo().join("target/xtask-tests"))
        .env("CARGO_TARGET_DIR", dir.parent().unwrap().join("target"))
        .args(args)
        .output()
        .expect("cargo runs")
}

fn xtask(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["run", "--quiet", "--package", "xtask", "--"];
    all.extend_from_slice(args);
    cargo(dir, &all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn new_module_list_modules_and_build_server() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    copy_workspace(&repo(), &ws);
    let snapshot = |ws: &Path| {
        [
            "Cargo.toml",
            "src/main.rs",
            "homeserver.yaml",
            "runtime/server/src/config/sample.yaml",
        ]
        .map(|f| std::fs::read_to_string(ws.join(f)).unwrap())
    };
    let before = snapshot(&ws);

    // Refusals change nothing.
    for (name, message) in [
        ("No-Spam", "`No-Spam` is not a valid module crate name"),
        ("demo", "modules/demo exists already"),
        (
            "axon_demo",
            "a module crate named `axon_demo` exists already",
        ),
        ("axon", "`axon` is reserved"),
    ] {
        let out = xtask(&ws, &["new-module", name]);
        assert!(!out.status.success(), "{name}");
        assert!(
            text(&out.stderr).contains(message),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(snapshot(&ws), before);
    assert!(!ws.join("modules/No-Spam").exists());

    // A new module: its crate, linked into the stock binary, listed in the sample config.
    let out = xtask(&ws, &["new-module", "no_spam"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created modules/no_spam: module path `no_spam::NoSpam`"));
    let main = std::fs::read_to_string(ws.join("src/main.rs")).unwrap();
    let linked = main
        .split("axon_server::homeserver_main!(")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    assert!(linked.split(", ").any(|c| c == "no_spam"), "{main}");
    let manifest = std::fs::read_to_string(ws.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("no_spam = { path = \"modules/no_spam\" }"));
    let sample = std::fs::read_to_string(ws.join("homeserver.yaml")).unwrap();
    assert!(sample.contains("#  - module: no_spam::NoSpam"));

    // Its end-to-end test passes straight away.
    let out = cargo(&ws, &["test", "--quiet", "--package", "no_spam"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("1 passed"),
        "{}",
        text(&out.stdout)
    );

    // list-modules shows it with its callbacks.
    let out = xtask(&ws, &["list-modules"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(
        listing.contains("no_spam (modules/no_spam)\n  no_spam::NoSpam: spam_checker"),
        "{listing}"
    );
    assert!(
        listing.contains("axon_demo (modules/demo)\n  axon_demo::DemoModule: spam_checker"),
        "{listing}"
    );

    // build-server links exactly the named crates.
    let binary = tmp.path().join("custom-axon");
    let out = xtask(
        &ws,
        &[
            "build-server",
            "--modules",
            "no_spam",
            "--out",
            binary.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = Command::new(&binary)
        .arg("--list-modules")
        .output()
        .unwrap();
    assert_eq!(text(&listed.stdout), "no_spam::NoSpam\n");

    let out = xtask(&ws, &["build-server", "--modules", "nope"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let listed = stderr
        .split("unknown module crate `nope`; the crates under modules/ are: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    let crates: Vec<&str> = listed.trim().split(", ").collect();
    assert!(
        crates.contains(&"axon_demo") && crates.contains(&"no_spam"),
        "{stderr}"
    );
    let out = xtask(&ws, &["build-server"]);
    assert!(text(&out.stderr).contains("build-server needs --modules a,b"));
}

#[test]
fn a_crate_outside_the_workspace_builds_its_own_homeserver() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my_homeserver");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let runtime = repo()
        .join("runtime")
        .display()
        .to_string()
        .replace('\\', "/");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"my_homeserver\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\naxon = {{ path = \"{runtime}/sdk\" }}\naxon-server = {{ path = \"{runtime}/server\" }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n[workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "use axon::prelude::*;\n\n/// A module defined in the binary's own crate.\npub struct Hello;\n\n#[module]\nimpl Hello {\n    fn new(_api: &ModuleApi) -> Self {\n        Hello\n    }\n\n    #[callback(account_validity)]\n    async fn is_user_expired(&self, _user: &UserId) -> Option<bool> {\n        None\n    }\n}\n\naxon_server::homeserver_main!();\n",
    )
    .unwrap();
    std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let out = cargo(&dir, &["build", "--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let binary = tmp
        .path()
        .join("target/debug")
        .join(format!("my_homeserver{}", std::env::consts::EXE_SUFFIX));
    let listed = Command::new(binary).arg("--list-modules").output().unwrap();
    assert_eq!(text(&listed.stdout), "my_homeserver::Hello\n");
}
