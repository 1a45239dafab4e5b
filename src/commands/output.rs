//! What commands print on stdout. With `--json` that is one JSON document and nothing else
//! (everything for people goes to stderr), so `pipedemo … --json | jq` always parses.

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

/// The version of every JSON document pipedemo prints; it grows when a field changes meaning
/// or goes away (new fields do not change it).
pub const SCHEMA_VERSION: u64 = 1;

/// `value` as pretty JSON with `schema_version` added at the top level.
pub fn json<T: Serialize>(value: &T) -> Result<String> {
    let mut v = serde_json::to_value(value)?;
    if let Value::Object(map) = &mut v {
        map.insert("schema_version".into(), Value::from(SCHEMA_VERSION));
    }
    Ok(serde_json::to_string_pretty(&v)?)
}

/// Prints `value` on stdout as the command's one JSON document.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", json(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_their_schema_version() {
        #[derive(Serialize)]
        struct R {
            events: u64,
        }
        let v: Value = serde_json::from_str(&json(&R { events: 3 }).unwrap()).unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["events"], 3);
    }
}
