//! `pipedemo.toml`: every setting as a key named like its flag (`pg_port = 5432`), and
//! `[profile.NAME]` sections over them, chosen with `--profile NAME`. Read with figment from
//! the working directory only (never a parent's: an application's repository around the
//! checkout must not point pipedemo at its data), or from `--config FILE`.
//!
//! The values become the flags' defaults, so the order is flag > environment > profile >
//! file > built-in default ([`Source`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::Value;
use figment::Figment;

/// The file read when no `--config` is given.
pub const DEFAULT_FILE: &str = "pipedemo.toml";

/// Where a setting's value came from, strongest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A flag on the command line.
    Flag,
    /// An environment variable (or `.env`), by name.
    Env(String),
    /// The `[profile.NAME]` section of the file.
    Profile(String, PathBuf),
    /// The file's top level.
    File(PathBuf),
    /// pipedemo's default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Profile(p, file) => write!(f, "profile {p} ({})", file.display()),
            Source::File(file) => write!(f, "file {}", file.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// What stands between a TOML list's items in a stored value, until [`joined`] puts the
/// separator of the flag it is for there: `-X` and `--connector-config` take `;`, since their
/// values hold commas, so a list joined with `,` was one corrupted value.
const LIST_SEP: &str = "\u{1f}";

/// A stored value as the flag's value: a list's items separated by the flag's own
/// `delimiter` (`,` for a flag without one).
pub fn joined(raw: &str, delimiter: Option<char>) -> String {
    raw.replace(LIST_SEP, delimiter.unwrap_or(',').encode_utf8(&mut [0; 4]))
}

/// A read config file: its top-level settings and the chosen profile's.
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Top-level settings, as flag values.
    pub base: BTreeMap<String, String>,
    /// The chosen profile's name and settings.
    pub profile: Option<(String, BTreeMap<String, String>)>,
}

impl ConfigFile {
    /// The value of `key` (a flag's long name with `_` for `-`) and where it is set: the
    /// profile's over the top level's.
    pub fn get(&self, key: &str) -> Option<(&str, Source)> {
        if let Some((name, p)) = &self.profile {
            if let Some(v) = p.get(key) {
                return Some((v, Source::Profile(name.clone(), self.path.clone())));
            }
        }
        self.base
            .get(key)
            .map(|v| (v.as_str(), Source::File(self.path.clone())))
    }

    /// Every key set, top level and profile.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.base
            .keys()
            .chain(self.profile.iter().flat_map(|(_, p)| p.keys()))
    }
}

/// Reads `explicit` (which must exist) or `pipedemo.toml` in the working directory (which
/// may not), with `profile` chosen. `None`: no file and no profile asked for.
pub fn load(explicit: Option<&Path>, profile: Option<&str>) -> Result<Option<ConfigFile>, String> {
    let path = match explicit {
        Some(p) if !p.is_file() => {
            return Err(format!(
                "--config {}: no such file (write one with settings named like the flags, e.g. pg_host = \"db.internal\")",
                p.display()
            ))
        }
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
        None => {
            return match profile {
                Some(p) => Err(format!(
                    "--profile {p}: there is no {DEFAULT_FILE} in the working directory; write one with a [profile.{p}] section, or pass --config FILE"
                )),
                None => Ok(None),
            }
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&path, &text, profile).map(Some)
}

/// [`load`] of `text` read from `path`.
pub fn parse(path: &Path, text: &str, profile: Option<&str>) -> Result<ConfigFile, String> {
    let bad = |e: figment::Error| format!("{} is not valid: {e}; fix or remove it", path.display());
    let all: BTreeMap<String, Value> = Figment::from(Toml::string(text)).extract().map_err(bad)?;
    let mut base = BTreeMap::new();
    let mut profiles = BTreeMap::new();
    for (key, value) in all {
        if key == "profile" {
            let Value::Dict(_, dict) = value else {
                return Err(format!(
                    "{}: `profile` must be a table of profiles ([profile.NAME])",
                    path.display()
                ));
            };
            for (name, section) in dict {
                let Value::Dict(_, settings) = section else {
                    return Err(format!(
                        "{}: profile `{name}` must be a table ([profile.{name}])",
                        path.display()
                    ));
                };
                let mut values = BTreeMap::new();
                for (k, v) in settings {
                    values.insert(k.clone(), flag_value(path, &k, &v)?);
                }
                profiles.insert(name, values);
            }
        } else {
            base.insert(key.clone(), flag_value(path, &key, &value)?);
        }
    }
    let profile = match profile {
        None => None,
        Some(name) => match profiles.remove(name) {
            Some(p) => Some((name.to_string(), p)),
            None => {
                let known: Vec<&String> = profiles.keys().collect();
                return Err(format!(
                    "--profile {name}: {} has no [profile.{name}] (profiles: {})",
                    path.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
            }
        },
    };
    Ok(ConfigFile {
        path: path.to_path_buf(),
        base,
        profile,
    })
}

/// A TOML value as a flag's value: lists comma-separated, tables refused.
fn flag_value(path: &Path, key: &str, v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_default(),
        Value::Array(_, items) => items
            .iter()
            .map(|i| flag_value(path, key, i))
            .collect::<Result<Vec<_>, _>>()?
            .join(LIST_SEP),
        Value::Empty(..) | Value::Dict(..) => {
            return Err(format!(
                "{}: `{key}` must be a value (a string, number, boolean or list), not a table",
                path.display()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
pg_host = "db.internal"
pg_port = 5432
phases = [10, 100]
no_tui = true

[profile.staging]
pg_host = "staging-db"
kafka_bootstrap_servers = "kafka-1:9092,kafka-2:9092"
"#;

    #[test]
    fn a_profile_wins_over_the_top_level() {
        let f = parse(Path::new("pipedemo.toml"), FILE, Some("staging")).unwrap();
        assert_eq!(
            f.get("pg_host"),
            Some((
                "staging-db",
                Source::Profile("staging".into(), "pipedemo.toml".into())
            ))
        );
        assert_eq!(
            f.get("pg_port"),
            Some(("5432", Source::File("pipedemo.toml".into())))
        );
        assert_eq!(joined(f.get("phases").unwrap().0, Some(',')), "10,100");
        assert_eq!(f.get("no_tui").unwrap().0, "true");
        assert_eq!(f.get("pg_user"), None);
        // Without the profile, its settings are not used.
        let f = parse(Path::new("pipedemo.toml"), FILE, None).unwrap();
        assert_eq!(f.get("pg_host").unwrap().0, "db.internal");
        assert_eq!(f.get("kafka_bootstrap_servers"), None);
    }

    #[test]
    fn a_list_is_joined_with_its_flags_own_separator() {
        let f = parse(
            Path::new("p.toml"),
            r#"connector_config = ["a=1,2", "database.password=x"]"#,
            None,
        )
        .unwrap();
        let raw = f.get("connector_config").unwrap().0;
        assert_eq!(joined(raw, Some(';')), "a=1,2;database.password=x");
        assert_eq!(joined(raw, None), "a=1,2,database.password=x");
        assert_eq!(joined("plain", Some(';')), "plain");
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse(Path::new("p.toml"), FILE, Some("prod")).unwrap_err();
        assert!(
            e.contains("p.toml has no [profile.prod] (profiles: staging)"),
            "{e}"
        );
        let e = parse(Path::new("p.toml"), "pg_host = ", None).unwrap_err();
        assert!(
            e.starts_with("p.toml is not valid:") && e.contains("fix or remove it"),
            "{e}"
        );
        let e = parse(Path::new("p.toml"), "[pg]\nhost = 1", None).unwrap_err();
        assert!(e.contains("`pg` must be a value"), "{e}");
        let e = load(Some(Path::new("/nonexistent/p.toml")), None).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
    }
}
