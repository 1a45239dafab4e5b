//! How the layers of settings meet on the command line: a flag, then the environment
//! (`PIPEDEMO_NAME` over `NAME`), then the config file's profile, then its top level, then the
//! default. The file's values become the flags' defaults and the prefixed variables the flags'
//! variables, so that clap itself applies the order; [`sources`] says afterwards where each
//! value came from.

use std::path::PathBuf;

use clap::parser::ValueSource;

/// `--config` and `--profile` (or `PIPEDEMO_CONFIG`, `PIPEDEMO_PROFILE`), read before the
/// parse because they decide the other flags' defaults.
pub fn config_flags(args: &[std::ffi::OsString]) -> (Option<PathBuf>, Option<String>) {
    let mut path = std::env::var_os("PIPEDEMO_CONFIG").map(PathBuf::from);
    let mut profile = std::env::var("PIPEDEMO_PROFILE").ok();
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        for (flag, slot) in [("--config", 0), ("--profile", 1)] {
            let value = if a == flag {
                it.next().map(|v| v.into_owned())
            } else {
                a.strip_prefix(&format!("{flag}=")).map(str::to_owned)
            };
            match (value, slot) {
                (Some(v), 0) => path = Some(PathBuf::from(v)),
                (Some(v), _) => profile = Some(v),
                (None, _) => {}
            }
        }
    }
    (path, profile)
}

/// The variables of every setting also under a `PIPEDEMO_` prefix (`PIPEDEMO_POSTGRES_HOST`),
/// which wins over the old name: an application's `.env` often sets `POSTGRES_USER` for
/// its own database.
pub fn prefixed_env(mut cmd: clap::Command) -> clap::Command {
    let ids: Vec<(String, String)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let var = a.get_env()?.to_str()?;
            (!var.starts_with("PIPEDEMO_")).then(|| (a.get_id().to_string(), var.to_string()))
        })
        .collect();
    for (id, var) in ids {
        let prefixed = format!("PIPEDEMO_{var}");
        if std::env::var_os(&prefixed).is_some() {
            cmd = cmd.mut_arg(id, |a| a.env(prefixed));
        }
    }
    cmd
}

/// The file's key for a flag: its long name with `_` for `-`.
fn key_of(a: &clap::Arg) -> Option<String> {
    a.get_long().map(|l| l.replace('-', "_"))
}

/// Flags the file must not set: they choose the file, or are actions.
const NOT_IN_FILE: [&str; 4] = ["config", "profile", "help", "version"];

/// A key of the file that is no flag of pipedemo: a typo would otherwise be ignored.
pub fn unknown_key(cmd: &clap::Command, f: &super::file::ConfigFile) -> Option<String> {
    let mut known: std::collections::BTreeSet<String> =
        cmd.get_arguments().filter_map(key_of).collect();
    for sc in cmd.get_subcommands() {
        known.extend(sc.get_arguments().filter_map(key_of));
    }
    f.keys()
        .find(|k| !known.contains(k.as_str()) || NOT_IN_FILE.contains(&k.as_str()))
        .map(|k| {
            format!(
                "{}: `{k}` is not a setting of pipedemo; keys are the flags' names with _ \
                 (pg_port = 5432, bootstrap_servers = \"host:9092\"); see `pipedemo config`",
                f.path.display()
            )
        })
}

/// The file's values as the defaults of the flags they name, on every subcommand that has
/// the flag.
pub fn with_file_defaults(mut cmd: clap::Command, f: &super::file::ConfigFile) -> clap::Command {
    let set = |a: clap::Arg| match key_of(&a).and_then(|k| f.get(&k).map(|(v, _)| (k, v))) {
        Some((k, v)) => {
            // A secret's default would print in `--help`.
            let secret = a.is_hide_env_values_set() || super::is_secret_key(&k);
            let v = super::file::joined(v, a.get_value_delimiter());
            a.default_value(v).hide_default_value(secret)
        }
        None => a,
    };
    let global: Vec<String> = cmd
        .get_arguments()
        .filter(|a| key_of(a).is_some_and(|k| f.get(&k).is_some()))
        .map(|a| a.get_id().to_string())
        .collect();
    for id in global {
        cmd = cmd.mut_arg(id, set);
    }
    let subs: Vec<(String, Vec<String>)> = cmd
        .get_subcommands()
        .map(|sc| {
            let ids = sc
                .get_arguments()
                .filter(|a| !a.is_global_set() && !a.is_positional())
                .filter(|a| key_of(a).is_some_and(|k| f.get(&k).is_some()))
                .map(|a| a.get_id().to_string())
                .collect();
            (sc.get_name().to_string(), ids)
        })
        .collect();
    for (name, ids) in subs {
        cmd = cmd.mut_subcommand(name, |mut sc| {
            for id in ids {
                sc = sc.mut_arg(id, set);
            }
            sc
        });
    }
    cmd
}

/// Every global setting's value (secrets as `***`) and where it came from, then the
/// subcommand flags the file sets: `pipedemo config`.
pub fn sources(
    cmd: &clap::Command,
    m: &clap::ArgMatches,
    file: Option<&super::file::ConfigFile>,
    original: &clap::Command,
) -> super::Sources {
    use super::file::Source;
    let mut out = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let (Some(key), id) = (key_of(arg), arg.get_id().as_str()) else {
            continue;
        };
        if NOT_IN_FILE.contains(&key.as_str()) {
            continue;
        }
        let value = m
            .get_raw(id)
            .map(|vs| {
                vs.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let source = match m.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env(
                arg.get_env()
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            _ => file
                .and_then(|f| f.get(&key))
                .map_or(Source::Default, |(_, s)| s),
        };
        let secret = arg.is_hide_env_values_set();
        out.push(super::SettingSource {
            value: super::shown_value(&key, &value, secret),
            key,
            source,
        });
    }
    if let Some(f) = file {
        let global: Vec<String> = out.iter().map(|s| s.key.clone()).collect();
        let mut keys: Vec<&String> = f.keys().filter(|k| !global.contains(k)).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if let Some((v, source)) = f.get(k) {
                out.push(super::SettingSource {
                    key: k.clone(),
                    value: super::shown_value(k, &super::file::joined(v, None), false),
                    source,
                });
            }
        }
    }
    // In the order of `pipedemo --help` (setting a default moves a flag to the end).
    let order: Vec<String> = original.get_arguments().filter_map(key_of).collect();
    out.sort_by_key(|s| order.iter().position(|k| *k == s.key).unwrap_or(usize::MAX));
    super::Sources(out)
}
