//! Kafka adapters (rdkafka): the producer and consumer actors that carry hop 1 (`tt_raw_data`)
//! and hop 2 (`tt_processed_data`) between processes, topic creation, and the dead-letter topic.
//!
//! Every librdkafka setting can be passed through (`TTPULSE_KAFKA_security.protocol=SASL_SSL`,
//! ...), so SASL and TLS are configuration, not code.

pub mod consumer;
pub mod producer;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub use consumer::{Feed, KafkaConsumerActor};
pub use producer::KafkaProducerActor;

pub const RAW_TOPIC: &str = "tt_raw_data";
pub const PROCESSED_TOPIC: &str = "tt_processed_data";
pub const DEAD_LETTER_TOPIC: &str = "tt_dead_letter";
/// Header of a dead letter that says why it could not be used.
pub const REASON_HEADER: &str = "ttpulse-error";

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`
    pub brokers: String,
    /// librdkafka settings passed through as they are (SASL, TLS, timeouts...).
    pub extra: Vec<(String, String)>,
    pub partitions: i32,
    pub replication: i32,
    /// Consumer group prefix: processors join `<group>-processor`, cache updaters `<group>-cache`.
    pub group: String,
}

impl KafkaSettings {
    /// The brokers and `defaults`, then the pass-through settings, so that a setting given in
    /// the environment overrides a default of the same key.
    fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }

    /// Idempotent producer, `acks=all`: no duplicates or reordering from retries, and an
    /// acknowledged message is on every in-sync replica.
    pub fn producer_config(&self) -> ClientConfig {
        self.config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "1"),
            // How long librdkafka keeps retrying a message (e.g. while the broker restarts).
            ("message.timeout.ms", "60000"),
        ])
    }

    /// Manual commits only, after the effects of a batch are stored.
    pub fn consumer_config(&self, group_suffix: &str) -> ClientConfig {
        let group = format!("{}-{group_suffix}", self.group);
        self.config(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "5"),
            ("session.timeout.ms", "10000"),
            // Notice a subscribed topic created after the consumer started (e.g. the broker was
            // down at start) within seconds, not the 5-minute default.
            ("topic.metadata.refresh.interval.ms", "2000"),
            ("heartbeat.interval.ms", "1000"),
        ])
    }

    pub fn admin_config(&self) -> ClientConfig {
        self.config(&[])
    }
}

/// Creates the three topics when missing. An existing topic is left as it is.
pub async fn ensure_topics(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings.admin_config().create()?;
    let replication = || TopicReplication::Fixed(settings.replication);
    let topics = [
        NewTopic::new(RAW_TOPIC, settings.partitions, replication()),
        NewTopic::new(PROCESSED_TOPIC, settings.partitions, replication()),
        NewTopic::new(DEAD_LETTER_TOPIC, 1, replication()),
    ];
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(5)))
        .operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(topic, "Kafka topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| tracing::error!(topic, %code, "cannot create"));
            }
        }
    }
    Ok(())
}

/// Asks the brokers for their metadata (blocking, at most `timeout`): whether they are
/// reachable with these settings, and which of ttpulse's topics exist.
pub fn check(settings: &KafkaSettings, timeout: Duration) -> Result<Vec<String>, KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = settings.admin_config().create()?;
    let metadata = consumer.fetch_metadata(None, timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|name| [RAW_TOPIC, PROCESSED_TOPIC, DEAD_LETTER_TOPIC].contains(&name.as_str()))
        .collect())
}

/// Reads librdkafka settings from environment variables named `<prefix><setting>`: either the
/// setting verbatim (`TTPULSE_KAFKA_security.protocol`) or upper case with `_` for `.`
/// (`TTPULSE_KAFKA_SECURITY_PROTOCOL`). `reserved` names are ttpulse's own keys.
pub fn settings_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
    reserved: &[&str],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(prefix)?;
            if name.is_empty() || reserved.contains(&name) {
                return None;
            }
            let setting = if name.chars().any(|c| c.is_ascii_lowercase()) {
                name.to_owned()
            } else {
                name.to_ascii_lowercase().replace('_', ".")
            };
            Some((setting, value))
        })
        .collect();
    out.sort();
    out
}

/// librdkafka settings that ttpulse's delivery guarantee rests on (idempotent, fully
/// acknowledged produce; commits only after the effects are stored; a new group reads from the
/// start; every event of an instrument on one partition, by key), and the two it sets from its
/// own variables. Overriding one is refused at start.
pub const GUARDED_SETTINGS: &[&str] = &[
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "group.id",
    "partitioner",
    "bootstrap.servers",
    "metadata.broker.list",
];

/// Refuses pass-through settings that would override one of [`GUARDED_SETTINGS`].
pub fn check_guarded(settings: &[(String, String)]) -> Result<(), String> {
    match settings.iter().find(|(key, _)| GUARDED_SETTINGS.contains(&key.as_str())) {
        None => Ok(()),
        Some((key, value)) => Err(format!(
            "the Kafka setting `{key}={value}` (from TTPULSE_KAFKA_...) would override a setting ttpulse's \
             delivery guarantee depends on; remove it (brokers: TTPULSE_KAFKA_BROKERS, group: TTPULSE_KAFKA_GROUP)"
        )),
    }
}

/// For logs: settings whose name suggests a secret are shown as `***`.
pub fn redacted(settings: &[(String, String)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| {
            let secret = ["password", "secret", "key", "token"].iter().any(|s| k.contains(s));
            (k.clone(), if secret { "***".to_owned() } else { v.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_of_the_delivery_guarantee_are_refused() {
        let vars = [("TTPULSE_KAFKA_ENABLE_AUTO_COMMIT".to_owned(), "true".to_owned())];
        let err = check_guarded(&settings_from_env(vars, "TTPULSE_KAFKA_", &[])).unwrap_err();
        assert!(err.contains("`enable.auto.commit=true`"), "{err}");
        for name in [
            "TTPULSE_KAFKA_acks",
            "TTPULSE_KAFKA_ENABLE_IDEMPOTENCE",
            "TTPULSE_KAFKA_group.id",
            "TTPULSE_KAFKA_partitioner",
        ] {
            let settings = settings_from_env([(name.to_owned(), "x".to_owned())], "TTPULSE_KAFKA_", &[]);
            assert!(check_guarded(&settings).is_err(), "{name}");
        }
        let fine = settings_from_env(
            [("TTPULSE_KAFKA_SECURITY_PROTOCOL".to_owned(), "SSL".to_owned())],
            "TTPULSE_KAFKA_",
            &[],
        );
        assert_eq!(check_guarded(&fine), Ok(()));
    }

    #[test]
    fn passthrough_settings_from_env() {
        let vars = [
            ("TTPULSE_KAFKA_BROKERS", "b:9092"),
            ("TTPULSE_KAFKA_security.protocol", "SASL_SSL"),
            ("TTPULSE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("TTPULSE_KAFKA_sasl.password", "hunter2"),
            ("OTHER", "x"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let settings = settings_from_env(vars, "TTPULSE_KAFKA_", &["BROKERS"]);
        assert_eq!(
            settings,
            vec![
                ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
                ("sasl.password".to_owned(), "hunter2".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ]
        );
        assert_eq!(redacted(&settings)[1].1, "***");
    }
}
