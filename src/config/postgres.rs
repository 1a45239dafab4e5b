//! PostgreSQL settings: host, credentials, TLS, and a libpq-style URL folded into them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::secrets::{redact_uri, Secret};

/// PostgreSQL holding the `event_outbox` table.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "PostgreSQL")]
pub struct PostgresArgs {
    /// PostgreSQL host.
    #[arg(
        global = true,
        long = "pg-host",
        env = "POSTGRES_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,
    /// PostgreSQL port.
    #[arg(
        global = true,
        long = "pg-port",
        env = "POSTGRES_PORT",
        default_value_t = 5432
    )]
    pub port: u16,
    /// Database holding event_outbox.
    #[arg(
        global = true,
        long = "pg-db",
        env = "POSTGRES_DB",
        default_value = "activity_db"
    )]
    pub db: String,
    /// PostgreSQL user (needs the REPLICATION attribute for Debezium).
    #[arg(
        global = true,
        long = "pg-user",
        env = "POSTGRES_USER",
        default_value = "pipedemo"
    )]
    pub user: String,
    /// PostgreSQL password (never printed).
    #[arg(
        global = true,
        long = "pg-password",
        env = "POSTGRES_PASSWORD",
        default_value = "pipedemo",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: Secret,
    /// TLS: `disable`, `prefer` (TLS when the server offers it, unverified), `require`
    /// (unverified, unless a CA file is given), `verify-ca` (the certificate chains to the CA),
    /// `verify-full` (and names the host), as libpq's sslmode.
    #[arg(
        global = true,
        long = "pg-sslmode",
        env = "POSTGRES_SSLMODE",
        value_enum,
        default_value_t = PgSslMode::Prefer
    )]
    pub sslmode: PgSslMode,
    /// CA certificate (PEM) that signed the server's certificate [default: the system's].
    #[arg(
        global = true,
        long = "pg-sslrootcert",
        env = "POSTGRES_SSLROOTCERT",
        value_name = "FILE"
    )]
    pub sslrootcert: Option<PathBuf>,
    /// A connection URL instead of the settings above:
    /// `postgresql://user:password@host:port/db?sslmode=verify-full&sslrootcert=/ca.pem`.
    /// Its parts win over the separate settings. (Not `DATABASE_URL`: an application's shell
    /// often exports that one, and it would point pipedemo at the application's database.)
    #[arg(
        global = true,
        long = "pg-url",
        env = "POSTGRES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: Option<Secret>,
}

/// libpq's `sslmode` values that pipedemo supports.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgSslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, without verifying the certificate.
    Prefer,
    /// TLS; the certificate is verified only when a CA file is given.
    Require,
    /// TLS, with a certificate signed by the CA.
    VerifyCa,
    /// TLS, with a certificate signed by the CA and naming the host.
    VerifyFull,
}

impl PgSslMode {
    /// The value as libpq and Debezium's `database.sslmode` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(s, true).ok()
    }
}

/// The parts of a `postgresql://` URL that pipedemo uses.
#[derive(Debug, PartialEq, Eq)]
pub struct PgUrl {
    /// Host.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Database.
    pub db: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// `sslmode`.
    pub sslmode: Option<PgSslMode>,
    /// `sslrootcert`.
    pub sslrootcert: Option<PathBuf>,
}

/// Parses a libpq-style URL. Errors name the part that is wrong, never the password.
pub fn parse_pg_url(url: &str) -> Result<PgUrl, String> {
    let redacted = redact_uri(url);
    let u = reqwest::Url::parse(url)
        .map_err(|e| format!("POSTGRES_URL `{redacted}` is not a URL ({e}); expected postgresql://user:password@host:5432/db?sslmode=require"))?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "POSTGRES_URL `{redacted}` must start with postgresql:// (or postgres://)"
        ));
    }
    let decode = |s: &str| -> Result<String, String> {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|d| d.into_owned())
            .map_err(|_| format!("POSTGRES_URL `{redacted}` has a %-escape that is not UTF-8"))
    };
    let mut out = PgUrl {
        host: u
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned()),
        port: u.port(),
        db: Some(u.path().trim_start_matches('/'))
            .filter(|d| !d.is_empty())
            .map(decode)
            .transpose()?,
        user: Some(u.username())
            .filter(|s| !s.is_empty())
            .map(decode)
            .transpose()?,
        password: u.password().map(decode).transpose()?.map(Secret::new),
        sslmode: None,
        sslrootcert: None,
    };
    for (k, v) in u.query_pairs() {
        match &*k {
            "sslmode" => {
                out.sslmode = Some(PgSslMode::parse(&v).ok_or_else(|| {
                    format!("POSTGRES_URL: sslmode `{v}` is not one of disable, prefer, require, verify-ca, verify-full")
                })?)
            }
            "sslrootcert" => out.sslrootcert = Some(PathBuf::from(&*v)),
            "host" => out.host = Some(v.into_owned()),
            "port" => {
                out.port = Some(v.parse().map_err(|_| format!("POSTGRES_URL: port `{v}` is not a number"))?)
            }
            "dbname" => out.db = Some(v.into_owned()),
            "user" => out.user = Some(v.into_owned()),
            "password" => out.password = Some(Secret::new(v.into_owned())),
            "application_name" | "connect_timeout" => {}
            other => {
                return Err(format!(
                    "POSTGRES_URL: parameter `{other}` is not supported (pipedemo reads host, port, dbname, user, password, sslmode, sslrootcert)"
                ))
            }
        }
    }
    Ok(out)
}

impl PostgresArgs {
    /// Folds `--pg-url` into the separate settings (its parts win). Called once, at start.
    pub fn resolve(&mut self) -> Result<(), String> {
        let Some(url) = self.url.take() else {
            return Ok(());
        };
        let u = parse_pg_url(url.expose())?;
        if let Some(h) = u.host {
            self.host = h;
        }
        if let Some(p) = u.port {
            self.port = p;
        }
        if let Some(d) = u.db {
            self.db = d;
        }
        if let Some(x) = u.user {
            self.user = x;
        }
        if let Some(x) = u.password {
            self.password = x;
        }
        if let Some(x) = u.sslmode {
            self.sslmode = x;
        }
        if let Some(x) = u.sslrootcert {
            self.sslrootcert = Some(x);
        }
        Ok(())
    }

    /// Where this connects, for messages: `user@host:port/db`, without the password.
    pub fn describe(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.db)
    }

    /// A tokio-postgres configuration for these settings.
    pub fn client_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.db)
            .user(&self.user)
            .password(self.password.expose())
            .application_name("pipedemo")
            .options("-c client_min_messages=warning")
            .connect_timeout(Duration::from_secs(5))
            .ssl_mode(match self.sslmode {
                PgSslMode::Disable => tokio_postgres::config::SslMode::Disable,
                PgSslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pg_url_gives_every_part_and_tls() {
        let u = parse_pg_url(
            "postgresql://app%40x:p%3Ass@db.example.com:6543/orders?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(u.host.as_deref(), Some("db.example.com"));
        assert_eq!(u.port, Some(6543));
        assert_eq!(u.db.as_deref(), Some("orders"));
        assert_eq!(u.user.as_deref(), Some("app@x"));
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("p:ss"));
        assert_eq!(u.sslmode, Some(PgSslMode::VerifyFull));
        assert_eq!(u.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        let e = parse_pg_url("postgresql://u:hunter2@h/db?sslmode=sometimes").unwrap_err();
        assert!(e.contains("sslmode `sometimes`"), "{e}");
        let e = parse_pg_url("mysql://u:hunter2@h/db").unwrap_err();
        assert!(e.contains("postgresql://") && !e.contains("hunter2"), "{e}");
        let e = parse_pg_url("postgresql://u:hunter2@h/db?gssencmode=x").unwrap_err();
        assert!(e.contains("gssencmode") && !e.contains("hunter2"), "{e}");
    }
}
