//! Loading the `modules:` list: every error an operator can make, with the
//! message they read.

use axon_testkit::scripted::*;

#[test]
fn no_modules_key_or_null_loads_nothing() {
    assert!(load("server_name: x\n").unwrap().modules.is_empty());
    assert!(load("modules:\n").unwrap().modules.is_empty());
    assert!(load("modules: []\n").unwrap().modules.is_empty());
}

#[test]
fn modules_must_be_a_list() {
    assert_eq!(
        load_errors("modules:\n  module: test.Bare\n"),
        ["at `modules`: expected a list of `- module: <path>` entries, found a mapping"]
    );
}

#[test]
fn an_entry_must_be_a_mapping() {
    assert_eq!(
        load_errors("modules:\n  - test.Bare\n"),
        ["at `modules[0]`: expected a mapping such as `module: my_crate::MyModule`, found string \"test.Bare\""]
    );
}

#[test]
fn an_entry_needs_a_module_key_holding_a_string() {
    assert_eq!(
        load_errors("modules:\n  - config: {}\n  - module: 3\n"),
        [
            "at `modules[0]`: missing `module:` key naming the module, such as `module: my_crate::MyModule`",
            "at `modules[1].module`: expected the module path as a string, found number `3`",
        ]
    );
}

#[test]
fn unknown_entry_keys_are_refused() {
    assert_eq!(
        load_errors("modules:\n  - module: test.Bare\n    confg: {}\n"),
        ["module `test.Bare` at `modules[0].confg`: unknown key; an entry has `module`, `config`, `callback_timeout` and `enabled`"]
    );
}

#[test]
fn a_module_in_the_workspace_but_not_in_this_binary_gets_the_build_command() {
    // This test binary links only the test modules, not `modules/*`.
    let errors = load_errors("modules:\n  - module: freeze_room::FreezeRoom\n");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("at `modules[0].module`: unknown module `freeze_room::FreezeRoom`: it is in crate `freeze_room` under modules/, but this binary was not built with it; build one that is: `cargo xtask build-server --modules "),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("freeze_room`") || errors[0].contains("freeze_room,"),
        "{}",
        errors[0]
    );
    // A typo is not mistaken for it.
    let typo = load_errors("modules:\n  - module: freeze_room::FreezeRom\n");
    assert!(!typo[0].contains("xtask"), "{}", typo[0]);
}

#[test]
fn enabled_false_keeps_the_block_but_skips_the_module() {
    // The disabled entry's config is not read, and its path not resolved:
    // a block for a module this binary lacks may stay in the file.
    let loaded = load(
        "modules:\n  - module: test.Bare\n    enabled: false\n    config: {nonsense: 1}\n  - module: not.Built\n    enabled: false\n  - module: test.Bare\n    enabled: true\n",
    )
    .unwrap();
    assert_eq!(loaded.modules.len(), 1);
    assert_eq!(
        loaded.modules[0].module.index, 2,
        "its place in the list is kept"
    );
    assert_eq!(
        load_errors("modules:\n  - module: test.Bare\n    enabled: no thanks\n"),
        ["module `test.Bare` at `modules[0].enabled`: expected `true` or `false`, found string \"no thanks\""]
    );
}

#[test]
fn callback_timeout_must_be_a_duration() {
    assert_eq!(
        load_errors("modules:\n  - module: test.Bare\n    callback_timeout: soon\n"),
        ["module `test.Bare` at `modules[0].callback_timeout`: expected a duration such as `5s` or `500ms` (or a number of milliseconds), found string \"soon\""]
    );
    let loaded = load("modules:\n  - module: test.Bare\n    callback_timeout: 250ms\n  - module: test.Bare\n    callback_timeout: 2000\n").unwrap();
    assert_eq!(
        loaded.modules[0].callback_timeout,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(
        loaded.modules[1].callback_timeout,
        std::time::Duration::from_secs(2)
    );
}

#[test]
fn unknown_module_suggests_the_closest_and_lists_what_is_compiled_in() {
    assert_eq!(
        load_errors("modules:\n  - module: test.Scripte\n"),
        ["at `modules[0].module`: unknown module `test.Scripte`; did you mean `test.Scripted`? Modules compiled into this binary: test.Bare, test.Hooked, test.Operator, test.Rules, test.Scripted"]
    );
    // A Synapse-style dotted path with another package finds the type.
    let errors = load_errors("modules:\n  - module: synapse_hooked.Hooked\n");
    assert!(
        errors[0].contains("did you mean `test.Hooked`?"),
        "{errors:?}"
    );
    // Nothing close: no suggestion.
    assert_eq!(
        load_errors("modules:\n  - module: zzz\n"),
        ["at `modules[0].module`: unknown module `zzz` Modules compiled into this binary: test.Bare, test.Hooked, test.Operator, test.Rules, test.Scripted"]
    );
}

#[test]
fn config_type_errors_name_the_module_index_and_yaml_path() {
    assert_eq!(
        load_errors("modules:\n  - module: test.Bare\n  - module: test.Scripted\n    config:\n      log: x\n      name: a\n      interested: ['@ok:test.local', 'not a user']\n"),
        ["module `test.Scripted` at `modules[1].config.interested[1]`: leading sigil is incorrect or missing"]
    );
    assert_eq!(
        load_errors("modules:\n  - module: test.Scripted\n    config:\n      log: x\n      name: a\n      behaviour: sometimes\n"),
        ["module `test.Scripted` at `modules[0].config.behaviour`: unknown variant `sometimes`, expected one of `allow`, `deny`, `deny_with_fields`, `error`, `panic`, `hang`"]
    );
}

#[test]
fn missing_config_is_an_empty_mapping() {
    assert_eq!(
        load_errors("modules:\n  - module: test.Scripted\n"),
        ["module `test.Scripted` at `modules[0].config`: missing field `log`"]
    );
    assert_eq!(
        load_errors("modules:\n  - module: test.Scripted\n    config:\n"),
        ["module `test.Scripted` at `modules[0].config`: missing field `log`"]
    );
}

#[test]
fn unknown_config_fields_are_refused_by_deny_unknown_fields() {
    assert_eq!(
        load_errors("modules:\n  - module: test.Scripted\n    config: {log: x, name: a, nmae: b}\n"),
        ["module `test.Scripted` at `modules[0].config.nmae`: unknown field `nmae`, expected one of `log`, `name`, `behaviour`, `unsigned`, `interested`"]
    );
}

#[test]
fn a_module_without_config_refuses_one() {
    assert_eq!(
        load_errors("modules:\n  - module: test.Bare\n    config: {x: 1}\n"),
        ["module `test.Bare` at `modules[0].config`: this module takes no config, found a mapping; remove `config:`"]
    );
    assert!(load("modules:\n  - module: test.Bare\n    config:\n").is_ok());
}

#[test]
fn the_constructors_config_error_is_placed_in_the_config() {
    assert_eq!(
        load_errors("modules:\n  - module: test.Scripted\n    config: {log: x, name: ''}\n"),
        ["module `test.Scripted` at `modules[0].config.name`: must not be empty"]
    );
}

#[test]
fn every_error_is_reported_together() {
    let yaml = "modules:\n  - module: nope\n  - module: test.Scripted\n  - 7\n  - module: test.Bare\n    config: [1]\n";
    let text = load(yaml).err().unwrap().to_string();
    assert_eq!(
        text,
        "4 errors in the modules config:\n  \
         - at `modules[0].module`: unknown module `nope` Modules compiled into this binary: test.Bare, test.Hooked, test.Operator, test.Rules, test.Scripted\n  \
         - module `test.Scripted` at `modules[1].config`: missing field `log`\n  \
         - at `modules[2]`: expected a mapping such as `module: my_crate::MyModule`, found number `7`\n  \
         - module `test.Bare` at `modules[3].config`: this module takes no config, found a list; remove `config:`"
    );
}

#[test]
fn only_listed_modules_are_instantiated_and_twice_listed_twice() {
    let loaded = load(
        "modules:\n  - module: test.Scripted\n    config: {log: twice, name: a}\n  - module: test.Scripted\n    config: {log: twice, name: b}\n",
    )
    .unwrap();
    let paths: Vec<String> = loaded
        .modules
        .iter()
        .map(|m| m.module.to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "modules[0] (`test.Scripted`)",
            "modules[1] (`test.Scripted`)"
        ]
    );
    assert_eq!(
        loaded
            .callbacks
            .spam_checker
            .user_may_create_room
            .entries()
            .len(),
        2
    );
    assert!(loaded.callbacks.spam_checker.user_may_join_room.is_empty());
}

#[test]
fn descriptors_carry_what_the_macro_saw() {
    let scripted = axon::module::compiled_modules()
        .find("test.Scripted")
        .unwrap();
    assert_eq!(scripted.type_name, "Scripted");
    assert_eq!(scripted.crate_name, "axon-testkit");
    assert!(scripted.has_config);
    assert!(scripted
        .callbacks
        .contains(&("spam_checker", "user_may_create_room")));
    let hooked = axon::module::compiled_modules()
        .find("test.Hooked")
        .unwrap();
    assert!(hooked.has_start && hooked.has_stop);
    assert_eq!(
        hooked.description,
        "A module with web resources and start/stop hooks that record themselves."
    );
    let bare = axon::module::compiled_modules().find("test.Bare").unwrap();
    assert!(!bare.has_config && bare.callbacks.is_empty());
}
