//! What commands print on stdout. With `--json` that is one JSON document and nothing else
//! (everything for people goes to stderr), so `pipedemo … --json | jq` always parses.

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use crate::check::figures::{self, Kind};
use crate::check::thresholds::{self, Checked, Threshold};

pub use crate::check::figures::SCHEMA_VERSION;

/// `value` as the document of a `kind` command: `kind` and `schema_version` added at the top
/// level, so that `pipedemo compare` knows what it reads.
pub fn document<T: Serialize>(kind: Kind, value: &T) -> Result<Value> {
    let mut v = serde_json::to_value(value)?;
    if let Value::Object(map) = &mut v {
        map.insert("kind".into(), Value::from(kind.name()));
        map.insert("schema_version".into(), Value::from(SCHEMA_VERSION));
    }
    Ok(v)
}

/// [`document`] as pretty JSON.
pub fn json<T: Serialize>(kind: Kind, value: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(&document(kind, value)?)?)
}

/// Prints `value` on stdout as the command's one JSON document.
pub fn print_json<T: Serialize>(kind: Kind, value: &T) -> Result<()> {
    println!("{}", json(kind, value)?);
    Ok(())
}

/// Prints `doc` on stdout as the command's one JSON document.
pub fn print_document(doc: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}

/// Text for people: on stdout, or on stderr when stdout carries the JSON document.
pub fn human(json: bool, text: &str) {
    if json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

/// Each gate's line, for [`human`].
pub fn threshold_lines(checked: &[Checked]) -> String {
    checked.iter().map(|c| c.line() + "\n").collect()
}

/// Judges `thresholds` on the figures of `doc` and records the verdicts in it
/// (`thresholds`); the caller prints the lines and fails on a broken one.
pub fn gate(kind: Kind, doc: &mut Value, thresholds: &[Threshold]) -> Vec<Checked> {
    let checked = thresholds::judge(thresholds, &figures::figures(kind, doc));
    if let Value::Object(map) = doc {
        map.insert(
            "thresholds".into(),
            serde_json::to_value(&checked).unwrap_or_default(),
        );
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_are_judged_on_the_document_and_recorded_in_it() {
        let mut doc = serde_json::json!({"phase": "load", "sent": 10, "delivered": 10,
            "stages": {}, "total_from_schedule": {"count": 10, "p99_ms": 12.0}});
        let t: Vec<Threshold> = vec![
            "p99<10ms".parse().unwrap(),
            "success>=100%".parse().unwrap(),
        ];
        let c = gate(Kind::Load, &mut doc, &t);
        assert_eq!(
            c.iter().map(|c| c.passed).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(doc["thresholds"][0]["threshold"], "p99<10ms");
        assert_eq!(doc["thresholds"][0]["actual"], 12.0);
        assert_eq!(doc["thresholds"][1]["passed"], true);
    }

    #[test]
    fn documents_carry_their_schema_version() {
        #[derive(Serialize)]
        struct R {
            events: u64,
        }
        let v: Value =
            serde_json::from_str(&json(Kind::Verify, &R { events: 3 }).unwrap()).unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["kind"], "verify");
        assert_eq!(v["events"], 3);
    }
}
