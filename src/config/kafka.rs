//! Kafka settings: brokers, topics, the consumer group, TLS and SASL, `-X` pass-through.

use std::path::PathBuf;

use clap::Args;

use super::secrets::{KeyValue, Secret};
use crate::event::AggregateType;

/// Kafka, the Debezium topic and the consumer group.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        global = true,
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    /// Debezium topic prefix (the connector's topic.prefix).
    #[arg(global = true, long, env = "TOPIC_PREFIX", default_value = "pipedemo")]
    pub topic_prefix: String,
    /// Topic with the outbox changes [default: <topic-prefix>.public.event_outbox].
    #[arg(global = true, long, env = "KAFKA_TOPIC")]
    pub topic: Option<String>,
    /// Dead-letter topic for messages that cannot be handled [default: <topic>.dlq].
    #[arg(global = true, long, env = "DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
    /// Consumer group of the pipedemo consumer.
    #[arg(
        global = true,
        long,
        env = "CONSUMER_GROUP",
        default_value = "event-processor-group"
    )]
    pub group: String,
    /// How clients talk to the brokers.
    #[arg(
        global = true,
        long = "kafka-security-protocol",
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value_t = KafkaSecurity::Plaintext
    )]
    pub security_protocol: KafkaSecurity,
    /// SASL mechanism (with SASL_SSL or SASL_PLAINTEXT).
    #[arg(
        global = true,
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true
    )]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    #[arg(
        global = true,
        long = "kafka-sasl-username",
        env = "KAFKA_SASL_USERNAME"
    )]
    pub sasl_username: Option<String>,
    /// SASL password (never printed).
    #[arg(
        global = true,
        long = "kafka-sasl-password",
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<Secret>,
    /// CA certificate(s) (PEM) for the brokers' certificates [default: the system's].
    #[arg(
        global = true,
        long = "kafka-ssl-ca",
        env = "KAFKA_SSL_CA_LOCATION",
        value_name = "FILE"
    )]
    pub ssl_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        global = true,
        long = "kafka-ssl-cert",
        env = "KAFKA_SSL_CERTIFICATE_LOCATION",
        value_name = "FILE"
    )]
    pub ssl_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(
        global = true,
        long = "kafka-ssl-key",
        env = "KAFKA_SSL_KEY_LOCATION",
        value_name = "FILE"
    )]
    pub ssl_key: Option<PathBuf>,
    /// Any librdkafka property, as kcat's -X (repeatable; applied after the settings above, so
    /// it wins over them). In the environment, separate entries with `;`. The settings that
    /// make pipedemo's guarantees (group.id, enable.auto.commit, acks, …) are set per client
    /// after these and cannot be overridden.
    #[arg(
        global = true,
        short = 'X',
        long = "kafka-option",
        env = "KAFKA_OPTIONS",
        value_name = "KEY=VALUE",
        value_delimiter = ';',
        value_parser = KeyValue::parse,
        hide_env_values = true
    )]
    pub options: Vec<KeyValue>,
    /// Replication factor of the topics pipedemo creates [default: the broker's
    /// default.replication.factor].
    #[arg(
        global = true,
        long = "replication-factor",
        env = "KAFKA_REPLICATION_FACTOR",
        value_parser = clap::value_parser!(i32).range(1..=16)
    )]
    pub replication_factor: Option<i32>,
    /// How Debezium puts outbox rows on Kafka: `raw`, every change event on one topic (the
    /// original design), or `event-router`, Debezium's Outbox Event Router: a topic per
    /// aggregate type, the payload as the value, the aggregate id as the key, the event id and
    /// type in headers.
    #[arg(
        global = true,
        long,
        env = "OUTBOX_ROUTING",
        value_enum,
        ignore_case = true,
        default_value_t = Routing::Raw
    )]
    pub routing: Routing,
    /// The Event Router's topic for each aggregate type (its route.topic.replacement;
    /// `${routedByValue}` is the aggregate type) [default:
    /// <topic-prefix>.outbox.event.${routedByValue}].
    #[arg(
        global = true,
        long,
        env = "OUTBOX_ROUTE_TOPIC",
        value_name = "PATTERN"
    )]
    pub route_topic: Option<String>,
}

/// How the connector routes outbox rows to topics.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Debezium's change events for `event_outbox` on one topic.
    #[default]
    Raw,
    /// Debezium's Outbox Event Router (`io.debezium.transforms.outbox.EventRouter`).
    EventRouter,
}

impl Routing {
    /// The setup command that creates what this routing reads.
    pub fn setup_command(self) -> &'static str {
        match self {
            Routing::Raw => "pipedemo setup",
            Routing::EventRouter => "pipedemo setup --routing event-router",
        }
    }

    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Raw => "raw",
            Routing::EventRouter => "event-router",
        }
    }
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The placeholder the Event Router replaces with the aggregate type.
pub const ROUTED_BY_VALUE: &str = "${routedByValue}";

/// The Event Router's topic pattern (its route.topic.replacement) as the text before and after
/// [`ROUTED_BY_VALUE`]: split once, so that naming a message's aggregate from its topic costs
/// two comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    before: String,
    after: String,
}

impl RoutePattern {
    /// The pattern `pattern` (one without the placeholder is all prefix).
    pub fn new(pattern: &str) -> Self {
        let (before, after) = pattern.split_once(ROUTED_BY_VALUE).unwrap_or((pattern, ""));
        RoutePattern {
            before: before.to_owned(),
            after: after.to_owned(),
        }
    }

    /// The topic of aggregate type `value`.
    pub fn topic(&self, value: &str) -> String {
        format!("{}{value}{}", self.before, self.after)
    }

    /// The aggregate type a topic of this pattern names (`None`: not one of its topics).
    pub fn value_of<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic
            .strip_prefix(self.before.as_str())?
            .strip_suffix(self.after.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A regular expression (librdkafka's `^` subscription) matching every topic of it. Kafka
    /// topic names hold only letters, digits, `.`, `_` and `-`, of which only `.` means
    /// something in a regular expression outside brackets.
    pub fn regex(&self) -> String {
        let escape = |s: &str| s.replace('.', r"\.");
        format!("^{}.+{}$", escape(&self.before), escape(&self.after))
    }
}

/// Why a route topic pattern cannot be pipedemo's (`None`: it can). The consumer subscribes
/// to every topic the pattern matches, so the pattern must keep to a namespace of pipedemo's
/// own: a fixed prefix of at least one segment (a name and a `.`, `_` or `-`) before the one
/// `${routedByValue}`, and no match for the dead-letter topic, Kafka's internal topics or
/// Kafka Connect's.
pub fn route_topic_refusal(pattern: &str, dlq_topic: &str) -> Option<String> {
    let example = "write a prefix of your own before it, e.g. orders.${routedByValue}";
    let places = pattern.matches(ROUTED_BY_VALUE).count();
    if places != 1 {
        return Some(format!(
            "--route-topic {pattern} has {} {ROUTED_BY_VALUE}: it needs exactly one, where the \
             aggregate type goes ({}); {example}",
            if places == 0 { "no" } else { "more than one" },
            if places == 0 {
                "without it every aggregate type would share one topic"
            } else {
                "the consumer could not tell which part is the aggregate"
            },
        ));
    }
    let p = RoutePattern::new(pattern);
    let segment = p
        .before
        .strip_suffix(['.', '_', '-'])
        .is_some_and(|s| s.chars().any(|c| c.is_ascii_alphanumeric()));
    if !segment {
        return Some(format!(
            "--route-topic {pattern} has no fixed prefix before {ROUTED_BY_VALUE}: the consumer \
             would subscribe to topics that are not pipedemo's; {example}"
        ));
    }
    if p.before.starts_with('_') || p.before.starts_with("connect-") {
        return Some(format!(
            "--route-topic {pattern} would match Kafka's internal topics (`_…`) or Kafka \
             Connect's (`connect-…`), which pipedemo never reads; {example}"
        ));
    }
    if p.value_of(dlq_topic).is_some() {
        return Some(format!(
            "--route-topic {pattern} matches the dead-letter topic {dlq_topic}: the consumer \
             would read its own dead letters; choose another prefix or --dlq-topic"
        ));
    }
    None
}

/// `security.protocol`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaSecurity {
    /// No TLS, no authentication.
    #[value(name = "PLAINTEXT")]
    Plaintext,
    /// TLS (with a client certificate for mutual TLS).
    #[value(name = "SSL")]
    Ssl,
    /// SASL without TLS.
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL over TLS.
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::Ssl => "ssl",
            KafkaSecurity::SaslPlaintext => "sasl_plaintext",
            KafkaSecurity::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(self, KafkaSecurity::SaslPlaintext | KafkaSecurity::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// User name and password in the clear (use with SASL_SSL).
    #[value(name = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaArgs {
    /// Checks that the security settings go together, with a message naming what is missing.
    pub fn validate(&self) -> Result<(), String> {
        self.check_routing()?;
        if self.security_protocol.sasl() {
            let missing: Vec<&str> = [
                (
                    self.sasl_mechanism.is_none(),
                    "KAFKA_SASL_MECHANISM (--kafka-sasl-mechanism)",
                ),
                (
                    self.sasl_username.is_none(),
                    "KAFKA_SASL_USERNAME (--kafka-sasl-username)",
                ),
                (
                    self.sasl_password.is_none(),
                    "KAFKA_SASL_PASSWORD (--kafka-sasl-password)",
                ),
            ]
            .iter()
            .filter(|(m, _)| *m)
            .map(|(_, n)| *n)
            .collect();
            let from_x = |k: &str| self.options.iter().any(|o| o.key == k);
            if !missing.is_empty() && !from_x("sasl.username") {
                return Err(format!(
                    "KAFKA_SECURITY_PROTOCOL={} needs {}",
                    self.security_protocol.as_str().to_uppercase(),
                    missing.join(", ")
                ));
            }
        } else if self.sasl_username.is_some() || self.sasl_mechanism.is_some() {
            return Err(format!(
                "SASL settings are given but KAFKA_SECURITY_PROTOCOL is {}: set it to SASL_SSL (or SASL_PLAINTEXT)",
                self.security_protocol.as_str().to_uppercase()
            ));
        }
        if self.ssl_cert.is_some() != self.ssl_key.is_some() {
            return Err(
                "mutual TLS needs both KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
                    .into(),
            );
        }
        for f in [&self.ssl_ca, &self.ssl_cert, &self.ssl_key]
            .into_iter()
            .flatten()
        {
            if !f.is_file() {
                return Err(format!("Kafka TLS file {} does not exist", f.display()));
            }
        }
        Ok(())
    }

    /// The librdkafka properties for these settings, in the order they are applied: the
    /// security settings, then every `-X`.
    pub fn client_properties(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = vec![(
            "security.protocol".into(),
            self.security_protocol.as_str().into(),
        )];
        if let Some(m) = self.sasl_mechanism {
            p.push(("sasl.mechanism".into(), m.as_str().into()));
        }
        if let Some(u) = &self.sasl_username {
            p.push(("sasl.username".into(), u.clone()));
        }
        if let Some(pw) = &self.sasl_password {
            p.push(("sasl.password".into(), pw.expose().to_owned()));
        }
        for (k, f) in [
            ("ssl.ca.location", &self.ssl_ca),
            ("ssl.certificate.location", &self.ssl_cert),
            ("ssl.key.location", &self.ssl_key),
        ] {
            if let Some(f) = f {
                p.push((k.into(), f.display().to_string()));
            }
        }
        p.extend(
            self.options
                .iter()
                .map(|o| (o.key.clone(), o.value.clone())),
        );
        p
    }

    /// Whether these settings use TLS (for messages).
    pub fn uses_tls(&self) -> bool {
        let proto = self
            .options
            .iter()
            .rev()
            .find(|o| o.key == "security.protocol")
            .map(|o| o.value.to_ascii_lowercase())
            .unwrap_or_else(|| self.security_protocol.as_str().to_owned());
        proto.ends_with("ssl")
    }

    /// The Debezium topic for `public.event_outbox`.
    pub fn topic(&self) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("{}.public.event_outbox", self.topic_prefix))
    }

    /// The Event Router's topic pattern (see [`KafkaArgs::route_topic`]).
    pub fn route_topic(&self) -> String {
        self.route_topic
            .clone()
            .unwrap_or_else(|| format!("{}.outbox.event.{ROUTED_BY_VALUE}", self.topic_prefix))
    }

    /// The Event Router's topic pattern, split around the aggregate type once.
    pub fn route_pattern(&self) -> RoutePattern {
        RoutePattern::new(&self.route_topic())
    }

    /// The topic the Event Router gives `aggregate`'s events.
    pub fn aggregate_topic(&self, aggregate: AggregateType) -> String {
        self.route_pattern().topic(aggregate.as_str())
    }

    /// The topics the outbox's events travel on: the one change-event topic, or one per
    /// aggregate type. Setup creates them, the consumer reads them, cleanup deletes them.
    pub fn topics(&self) -> Vec<String> {
        match self.routing {
            Routing::Raw => vec![self.topic()],
            Routing::EventRouter => AggregateType::ALL
                .into_iter()
                .map(|a| self.aggregate_topic(a))
                .collect(),
        }
    }

    /// What the consumer subscribes to: the topic, or (routed) a pattern that matches every
    /// topic the router can make, so that an aggregate type nobody handles arrives, and is
    /// dead-lettered, instead of filling a topic nobody reads.
    pub fn subscription(&self) -> String {
        match self.routing {
            Routing::Raw => self.topic(),
            Routing::EventRouter => self.route_pattern().regex(),
        }
    }

    /// Whether the topic settings make sense together.
    pub fn check_routing(&self) -> Result<(), String> {
        if self.routing == Routing::EventRouter {
            if let Some(why) = route_topic_refusal(&self.route_topic(), &self.dlq_topic())
                .or_else(|| route_topic_refusal(&self.route_topic(), &self.results_topic()))
            {
                return Err(why);
            }
            if self.topic.is_some() {
                return Err(
                    "--topic names the raw change-event topic, which --routing event-router does not use; \
                     set --route-topic instead"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The results topic: where each process of a run publishes its figures (next to the
    /// dead-letter topic, named after the outbox topic).
    pub fn results_topic(&self) -> String {
        format!("{}.results", self.topic())
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic()))
    }
}

/// The Kafka settings of the command line `x ARGS`, for tests.
#[cfg(test)]
pub(crate) fn parse_args(args: &[&str]) -> KafkaArgs {
    #[derive(clap::Parser)]
    struct A {
        #[command(flatten)]
        k: KafkaArgs,
    }
    <A as clap::Parser>::parse_from(std::iter::once(&"x").chain(args)).k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> KafkaArgs {
        parse_args(&[&["--topic-prefix", "shop"], extra].concat())
    }

    #[test]
    fn raw_routing_is_one_topic() {
        let k = args(&[]);
        assert_eq!(k.routing, Routing::Raw);
        assert_eq!(k.topics(), ["shop.public.event_outbox"]);
        assert_eq!(k.subscription(), "shop.public.event_outbox");
        assert_eq!(k.check_routing(), Ok(()));
    }

    #[test]
    fn the_event_router_has_a_topic_per_aggregate_and_a_pattern_for_all() {
        let k = args(&["--routing", "event-router"]);
        assert_eq!(
            k.topics(),
            ["shop.outbox.event.User", "shop.outbox.event.Activity"]
        );
        assert_eq!(k.subscription(), r"^shop\.outbox\.event\..+$");
        let aggregate_of = |t| k.route_pattern().value_of(t).and_then(AggregateType::parse);
        assert_eq!(
            aggregate_of("shop.outbox.event.Activity"),
            Some(AggregateType::Activity)
        );
        assert_eq!(aggregate_of("shop.outbox.event.Order"), None);
        assert_eq!(k.route_pattern().value_of("shop.public.event_outbox"), None);
        // The dead-letter topic is not one of the pattern's.
        assert!(!k.dlq_topic().starts_with("shop.outbox.event."));
        let k = args(&[
            "--routing",
            "event-router",
            "--route-topic",
            "events-${routedByValue}.v1",
        ]);
        assert_eq!(k.aggregate_topic(AggregateType::User), "events-User.v1");
        assert_eq!(k.subscription(), r"^events-.+\.v1$");
    }

    #[test]
    fn routing_settings_that_cannot_work_are_refused() {
        let k = args(&["--routing", "event-router", "--route-topic", "all-events"]);
        let e = k.check_routing().unwrap_err();
        assert!(e.contains("has no ${routedByValue}"), "{e}");
        let k = args(&["--routing", "event-router", "--topic", "mine"]);
        let e = k.check_routing().unwrap_err();
        assert!(e.contains("set --route-topic instead"), "{e}");
    }

    #[test]
    fn a_route_topic_must_keep_to_a_namespace_of_pipedemos_own() {
        let dlq = "pipedemo.public.event_outbox.dlq";
        let refused = |p: &str| route_topic_refusal(p, dlq).unwrap_or_default();
        // `^.+$`: every topic of the cluster, connect-configs (passwords) included.
        assert!(refused("${routedByValue}").contains("no fixed prefix"));
        assert!(refused("x${routedByValue}").contains("no fixed prefix"));
        assert!(refused("..${routedByValue}").contains("no fixed prefix"));
        assert!(refused("a.${routedByValue}.${routedByValue}").contains("more than one"));
        assert!(refused("connect-${routedByValue}").contains("Kafka Connect's"));
        assert!(refused("__${routedByValue}").contains("no fixed prefix"));
        assert!(refused("_confluent-${routedByValue}").contains("internal topics"));
        let e = refused("pipedemo.public.${routedByValue}");
        assert!(e.contains("matches the dead-letter topic"), "{e}");
        for ok in [
            "pipedemo.outbox.event.${routedByValue}",
            "orders.${routedByValue}",
            "events-${routedByValue}-v1",
        ] {
            assert_eq!(route_topic_refusal(ok, dlq), None, "{ok}");
        }
        // Through the settings: the refusal names the flag.
        let k = args(&[
            "--routing",
            "event-router",
            "--route-topic",
            "${routedByValue}",
        ]);
        assert!(k.check_routing().unwrap_err().contains("--route-topic"));
    }
}
