//! The test suite's own wiring: every stack test on a private stack is in nextest's group that
//! bounds how many run at once, and no other is (a test missing there could start more private
//! stacks than the machine holds; one there by mistake would wait for nothing).

use std::collections::BTreeSet;

const STACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/stack");

/// `module::test` of every stack test whose body starts a `PrivateStack`.
fn tests_on_private_stacks() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(STACK).unwrap() {
        let path = entry.unwrap().path();
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let fn_at = line
                .find("fn ")
                .filter(|_| !line.trim_start().starts_with("//"));
            if let Some(at) = fn_at {
                let name: String = line[at + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                current = Some(name);
            }
            if line.contains("PrivateStack::up(") {
                found.insert(format!("{module}::{}", current.clone().unwrap()));
            }
        }
    }
    found
}

/// The tests named in `.config/nextest.toml`'s override for the `private-stack` group.
fn grouped() -> BTreeSet<String> {
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.config/nextest.toml"))
            .unwrap();
    let filter = config
        .lines()
        .take_while(|l| !l.contains("test-group = \"private-stack\""))
        .filter(|l| l.starts_with("filter = "))
        .last()
        .expect("an override with a filter for the private-stack group");
    filter
        .split("test(=")
        .skip(1)
        .map(|t| t.split(')').next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_test_on_a_private_stack_is_in_the_group_that_bounds_them() {
    let private = tests_on_private_stacks();
    assert!(
        private.len() >= 4,
        "the chaos and outage tests stop services: {private:?}"
    );
    assert_eq!(private, grouped(), "tests/stack vs .config/nextest.toml");
}
