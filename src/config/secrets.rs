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
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with(".key")
        || k.ends_with("key.pem")
        || k.ends_with("keystore.key")
}

/// `value`, or `***` when `key` names a secret.
pub fn redact_setting(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        "***".into()
    } else {
        value.to_owned()
    }
}

/// Replaces the password in `scheme://user:password@host` with `***`.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let rest = &uri[scheme_end + 3..];
    // The user information ends at the last `@` before the query: a password may hold a `/`
    // that its writer did not escape, so the first `/` cannot mark the end of the host.
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    match rest[..before_query].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &uri[..scheme_end + 3], user, &rest[at..])
        }
        None => uri.to_owned(),
    }
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
    }
}
