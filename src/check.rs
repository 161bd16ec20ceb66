//! `ttpulse check`: validates the configuration and the reachability of every configured
//! service, and says what is wrong, one line each. Nothing is created or migrated.

use std::time::Duration;

use ttpulse_actors::kafka::{self, KafkaSettings};
use ttpulse_actors::store::{DbPool, redact_url};

use crate::config::{Config, Role};
use crate::wiring;

/// One finding: what was checked, and `Ok(detail)` or `Err(problem)`.
pub type Finding = (String, Result<String, String>);

pub async fn run(config: &Config) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    // The rules `run` checks first, on the two lines `check` always printed: roles, carriers and
    // source; then token, admin and ingest settings. Each line is there whatever the other says.
    findings.push((
        "configuration".into(),
        config.check_carriers_and_source().map(|_| "roles and carriers fit".into()).map_err(|e| format!("{e:#}")),
    ));
    findings.push((
        "security".into(),
        config.check_access().map(|()| "token and admin settings valid".into()).map_err(|e| format!("{e:#}")),
    ));
    findings.push((
        format!("listen address {}", config.server.http_addr),
        std::net::TcpListener::bind(config.server.http_addr)
            .map(|_| "free".into())
            .map_err(|e| format!("cannot listen: {e}")),
    ));

    let needs_db = config.carriers.kafka_brokers.is_none()
        || [Role::Processor, Role::Cache, Role::Api].iter().any(|r| config.has(*r));
    if needs_db {
        let (what, result) = match &config.carriers.database_url {
            Some(url) => {
                let url = url.clone();
                let result = actix_rt::task::spawn_blocking(move || DbPool::check(&url)).await;
                (
                    format!("database {}", redact_url(config.carriers.database_url.as_deref().unwrap_or_default())),
                    result,
                )
            }
            None => {
                let path = config.database_path();
                let result = match wiring::prepare_data_dir(config) {
                    Ok(()) => {
                        let text = path.display().to_string();
                        actix_rt::task::spawn_blocking(move || DbPool::check(&text)).await
                    }
                    Err(e) => {
                        Ok(Err(ttpulse_actors::store::StoreError::open(path.display().to_string(), format!("{e:#}"))))
                    }
                };
                (format!("database {}", path.display()), result)
            }
        };
        let result = match result {
            Ok(Ok(backend)) => Ok(format!("{backend}, reachable")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        findings.push((what, result));
    }

    if let Some(brokers) = &config.carriers.kafka_brokers {
        let settings = KafkaSettings {
            brokers: brokers.clone(),
            extra: kafka::settings_from_env(
                std::env::vars(),
                "TTPULSE_KAFKA_",
                &["BROKERS", "PARTITIONS", "REPLICATION", "GROUP"],
            ),
            partitions: config.carriers.kafka_partitions,
            replication: config.carriers.kafka_replication,
            group: config.carriers.kafka_group.clone(),
        };
        let result = actix_rt::task::spawn_blocking(move || kafka::check(&settings, Duration::from_secs(5))).await;
        let result = match result {
            Ok(Ok(topics)) if topics.len() == 3 => Ok("reachable; topics present".into()),
            Ok(Ok(topics)) => Ok(format!("reachable; topics present: {topics:?} (the others are created at start)")),
            Ok(Err(e)) => Err(format!("unreachable: {e}")),
            Err(e) => Err(e.to_string()),
        };
        findings.push((format!("Kafka {brokers}"), result));
    }

    if let Some(url) = &config.carriers.redis_url {
        // A server that answers a plaintext client with silence or a reset may well speak TLS.
        let hint = |e: &str| {
            if url.starts_with("redis://") && !e.contains("refused") {
                " (if the server speaks TLS, use rediss://)"
            } else {
                ""
            }
        };
        let result = match ttpulse_actors::cache::redis::client(url, config.carriers.redis_ca_file.as_deref()) {
            // A setting that makes no client: not a question of reaching the server.
            Err(e) => Err(format!("{:#}", anyhow::Error::new(e))),
            Ok(client) => async {
                let mut conn =
                    actix_rt::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
                        .await
                        .map_err(|_| "no answer within 5 s".to_owned())?
                        .map_err(|e| e.to_string())?;
                let pong: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(format!("reachable ({pong})"))
            }
            .await
            .map_err(|e| format!("unreachable: {e}{}", hint(&e))),
        };
        findings.push((format!("Redis {}", redact_url(url)), result));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminAccess;

    fn line<'a>(findings: &'a [Finding], what: &str) -> Option<Result<&'a str, &'a str>> {
        findings.iter().find(|(w, _)| w == what).map(|(_, r)| r.as_ref().map(String::as_str).map_err(String::as_str))
    }

    /// `configuration` and `security` are two lines, each always printed (docs/operations.md):
    /// a bad access setting fails `security` alone, a bad role setting `configuration` alone,
    /// and the number of checks stays the same.
    #[actix_rt::test]
    async fn configuration_and_security_are_two_lines_whatever_fails() {
        let dir = tempfile::tempdir().expect("dir");
        let good = Config::for_tests(dir.path().to_owned());
        let findings = run(&good).await;
        assert_eq!(line(&findings, "configuration"), Some(Ok("roles and carriers fit")), "{findings:?}");
        assert_eq!(line(&findings, "security"), Some(Ok("token and admin settings valid")), "{findings:?}");
        let count = findings.len();

        let mut bad_access = good.clone();
        bad_access.access.admin_access = AdminAccess::Token;
        let findings = run(&bad_access).await;
        assert_eq!(line(&findings, "configuration"), Some(Ok("roles and carriers fit")), "{findings:?}");
        assert_eq!(
            line(&findings, "security"),
            Some(Err("TTPULSE_ADMIN_ACCESS=token needs TTPULSE_ADMIN_TOKEN")),
            "{findings:?}"
        );
        assert_eq!(findings.len(), count, "{findings:?}");

        let mut bad_roles = good.clone();
        bad_roles.roles = vec![Role::Api];
        let findings = run(&bad_roles).await;
        assert!(
            line(&findings, "configuration")
                .is_some_and(|r| r.is_err_and(|e| e.contains("running only some roles (api)"))),
            "{findings:?}"
        );
        assert_eq!(line(&findings, "security"), Some(Ok("token and admin settings valid")), "{findings:?}");
        assert_eq!(findings.len(), count, "{findings:?}");
    }
}
