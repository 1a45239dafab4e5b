//! Secrets in settings: a password type that never prints, `key=value` pass-through settings
//! redacted by key, and URIs with their password replaced.

use std::fmt;
use std::str::FromStr;

/// A password: usable by the clients, never shown by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a client library. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A `key=value` setting passed through to a client (`-X`, `--connector-config`). Its value is
/// shown as `***` when the key names a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The property.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl KeyValue {
    /// Parses `key=value` (the value may contain `=`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(KeyValue {
                key: k.trim().to_owned(),
                value: v.to_owned(),
            }),
            // Not echoed: a malformed pair may still hold a secret.
            _ => Err("expected KEY=VALUE (a property name, `=`, its value)".into()),
        }
    }

    /// `key=value` with the value redacted when the key names a secret.
    pub fn redacted(&self) -> String {
        format!("{}={}", self.key, redact_setting(&self.key, &self.value))
    }
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Whether a client property's value is a secret: passwords, keys, tokens, JAAS lines.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    // The Outbox Event Router's `table.field.event.key` names a column, not a key.
    if k.contains(".table.field.") {
        return false;
    }
    [
        "password",
        "secret",
        "jaas",
        "token",
        "credential",
        "user.info",
        "oauthbearer.config",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with(".key")
        || k.ends_with("key.pem")
        || k.ends_with("keystore.key")
}

/// `value`, or `***` when `key` names a secret; a URL with its secrets hidden.
pub fn redact_setting(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        "***".into()
    } else if is_url(value) {
        redact_uri(value)
    } else {
        value.to_owned()
    }
}

/// A URL with its secrets as `***`: the password of its user information and the value of
/// every query parameter that names a secret (`password=`, `token=`, `secret=`, a key, a
/// signature). The user information ends at the last `@`: a password may hold `/`, `?` or
/// `#` that its writer did not escape, so none of them can mark where it ends (an `@` in a
/// query then hides a little more than it must, never less).
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let (head, rest) = uri.split_at(scheme_end + 3);
    let rest = match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{user}:***{}", &rest[at..])
        }
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => rest,
    };
    format!("{head}{rest}")
}

/// Query parameters with the values of secret ones as `***`.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a URL's query parameter carries a secret.
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    is_secret_key(&n)
        || ["pass", "pwd", "key", "sig", "authmechanismproperties"]
            .iter()
            .any(|w| n.contains(w))
}

/// Whether `value` is one URL (a scheme, then `://`), rather than a list that holds one.
fn is_url(value: &str) -> bool {
    value.find("://").is_some_and(|i| {
        i > 0
            && value[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// A setting's value as pipedemo shows it anywhere (`config`, errors, reports): one rule. A
/// URL with its password and secret parameters hidden ([`redact_uri`]); a secret setting
/// (`secret`, or a key that names one) as `***`; a list of `key=value` entries with each
/// entry redacted by its key, and URLs in it as URLs.
pub fn redact_value(key: &str, value: &str, secret: bool) -> String {
    if value.is_empty() {
        return String::new();
    }
    if is_url(value) && !value.contains([';', ',']) {
        return redact_uri(value);
    }
    if is_secret_key(key) {
        return "***".into();
    }
    // A list of settings (`-X`, `--connector-config`): each entry by its own key, as `setup`
    // shows the connector's. Anything else of a secret setting is hidden whole.
    let listed = value.split([',', ';']).all(|e| {
        e.split_once('=')
            .is_some_and(|(k, _)| !k.is_empty() && !is_url(k))
    });
    if !listed {
        return if secret {
            "***".into()
        } else {
            value.to_owned()
        };
    }
    value
        .split_inclusive([',', ';'])
        .map(|entry| {
            let (body, sep) = match entry.strip_suffix([',', ';']) {
                Some(b) => (b, &entry[b.len()..]),
                None => (entry, ""),
            };
            let shown = match body.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                Some((k, v)) if is_url(v) => format!("{k}={}", redact_uri(v)),
                Some(_) => body.to_owned(),
                None if is_url(body) => redact_uri(body),
                None => body.to_owned(),
            };
            format!("{shown}{sep}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_settings_are_redacted_and_others_shown() {
        for k in [
            "sasl.password",
            "database.password",
            "sasl.jaas.config",
            "ssl.key.pem",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "ssl.keystore.key",
            "value.converter.basic.auth.user.info",
            "schema.registry.basic.auth.user.info",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "security.protocol",
            "key.converter",
            "ssl.ca.location",
            "message.key.columns",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
        let kv = KeyValue::parse("sasl.password=a=b").unwrap();
        assert_eq!(
            (kv.key.as_str(), kv.value.as_str()),
            ("sasl.password", "a=b")
        );
        assert_eq!(format!("{kv:?}"), "sasl.password=***");
        assert!(!KeyValue::parse("novalue").unwrap_err().contains("novalue="));
    }

    #[test]
    fn uri_passwords_are_redacted() {
        assert_eq!(
            redact_uri("mongodb://app:s3cret@db:27017/x?authSource=admin"),
            "mongodb://app:***@db:27017/x?authSource=admin"
        );
        assert_eq!(
            redact_uri("mongodb://127.0.0.1:27017"),
            "mongodb://127.0.0.1:27017"
        );
        assert_eq!(redact_uri("not a uri"), "not a uri");
        // An unescaped `/` in the password must not end the redaction early.
        assert_eq!(
            redact_uri("mongodb://app:pa/ss@db:27017/x"),
            "mongodb://app:***@db:27017/x"
        );
        assert_eq!(
            redact_uri("postgresql://u:a/b@c@h/db?sslmode=require"),
            "postgresql://u:***@h/db?sslmode=require"
        );
        // A `#` or `?` in an unescaped password must not end it either.
        assert_eq!(
            redact_uri("postgresql://u:p#ss@h:5x/db"),
            "postgresql://u:***@h:5x/db"
        );
        assert_eq!(
            redact_uri("postgresql://u:p?ss@h/db"),
            "postgresql://u:***@h/db"
        );
        // Secrets in the query.
        assert_eq!(
            redact_uri("postgresql://u@h/db?sslmode=require&password=hunter2"),
            "postgresql://u:***@h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact_uri("https://h/x?sig=abc&api_key=k&a=1"),
            "https://h/x?sig=***&api_key=***&a=1"
        );
    }

    #[test]
    fn one_rule_shows_every_setting_without_its_secrets() {
        let v = |k: &str, v: &str, secret| redact_value(k, v, secret);
        assert_eq!(v("pg_host", "db", false), "db");
        assert_eq!(v("pg_password", "hunter2", true), "***");
        assert_eq!(v("sasl.oauthbearer.client.secret", "s", false), "***");
        assert_eq!(
            v("pg_url", "postgresql://u:pw@h/db?password=x", true),
            "postgresql://u:***@h/db?password=***"
        );
        // A list that holds a URL is not one URL: each entry by its key.
        assert_eq!(
            v(
                "kafka_option",
                "sasl.oauthbearer.token.endpoint.url=https://idp/t;sasl.oauthbearer.client.secret=s",
                true
            ),
            // `token` in a key hides it: more than it must, never less.
            "sasl.oauthbearer.token.endpoint.url=***;sasl.oauthbearer.client.secret=***"
        );
        assert_eq!(
            v(
                "kafka_option",
                "security.protocol=ssl;ssl.key.password=k",
                true
            ),
            "security.protocol=ssl;ssl.key.password=***"
        );
        // Not a list of settings: a secret setting is hidden whole.
        assert_eq!(v("kafka_option", "a=1,2", true), "***");
        assert_eq!(v("connector_config", "oops", true), "***");
        assert_eq!(
            v(
                "list",
                "value.converter.schema.registry.url=https://u:p@reg,value.converter.basic.auth.user.info=u:p;a=1",
                false
            ),
            "value.converter.schema.registry.url=https://u:***@reg,value.converter.basic.auth.user.info=***;a=1"
        );
    }
}
