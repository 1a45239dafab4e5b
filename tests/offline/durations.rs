//! Durations as a user types them: a bad one is one clear line, before anything runs.

use crate::common::text;

/// `pipedemo ARGS`, in a world of its own (nothing here reaches a service).
fn pipedemo(args: &[&str]) -> std::process::Output {
    crate::common::pipedemo("durations")
        .args(args)
        .output()
        .expect("pipedemo runs")
}

#[test]
fn a_bad_duration_is_one_clear_line() {
    for args in [
        &["capacity", "--step", "fast"][..],
        &["load", "--duration", "5 parsecs", "--rate", "10"][..],
    ] {
        let o = pipedemo(args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].contains("is not a duration") && lines[0].contains("like 90s"),
            "{err}"
        );
    }
    let o = pipedemo(&["capacity", "--step", "200ms"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("a step needs at least 1s"),
        "{}",
        text(&o)
    );
    let o = pipedemo(&["load", "--duration", "10s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("--rate"),
        "a soak needs a rate: {}",
        text(&o)
    );
}
