//! The test suite's own wiring: every stack test that takes the stack alone is one nextest runs
//! with nothing beside it, and no other is (a test missing there would sit in a slot waiting
//! for the lock; one there by mistake would run alone for nothing).

use std::collections::BTreeSet;

const STACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/stack");

/// `module::test` of every stack test whose body calls `common::stack_alone()`.
fn tests_alone() -> BTreeSet<String> {
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
            if line.contains("common::stack_alone()") {
                found.insert(format!("{module}::{}", current.clone().unwrap()));
            }
        }
    }
    found
}

/// The tests named in `.config/nextest.toml`'s override that takes every thread.
fn grouped() -> BTreeSet<String> {
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.config/nextest.toml"))
            .unwrap();
    let filter = config
        .lines()
        .take_while(|l| !l.contains("threads-required = \"num-test-threads\""))
        .filter(|l| l.starts_with("filter = "))
        .last()
        .expect("an override with a filter that takes every thread");
    filter
        .split("test(=")
        .skip(1)
        .map(|t| t.split(')').next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_test_that_takes_the_stack_alone_runs_with_nothing_beside_it() {
    let alone = tests_alone();
    assert!(
        alone.len() >= 4,
        "the chaos and outage tests stop services: {alone:?}"
    );
    assert_eq!(alone, grouped(), "tests/stack vs .config/nextest.toml");
}
