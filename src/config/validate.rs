//! The one validation step: every rule that ties settings together and needs no network runs
//! here, before anything starts, and yields [`Validated`], the only form `wiring::start` and
//! the HTTP layer's `Auth` accept (`http::start` takes a `Config` and validates it first).
//! `ttpulse check` runs it too, then tries the network.

use std::ops::Deref;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use ttpulse_actors::ingest::SourceConfig;
use ttpulse_actors::kafka;
use ttpulse_actors::store::redact_url;

use super::{AdminAccess, Config, MarketAccess, Role, SourceKind};

/// Settings that passed [`Config::validate`], with what the checks derived from them.
#[derive(Debug, Clone)]
pub struct Validated {
    config: Config,
    /// The source of raw events (the replay file was found, the simulator's seed chosen).
    pub source: SourceConfig,
    /// librdkafka settings passed through from `TTPULSE_KAFKA_<setting>` (none that ttpulse
    /// must own).
    pub kafka_passthrough: Vec<(String, String)>,
}

impl Deref for Validated {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Config {
    /// Checks that the roles, carriers, source and access settings fit together; the error
    /// names the variable to change. (Access settings first, then roles, carriers and source:
    /// the order `run` has always reported them in.)
    pub fn validate(self) -> anyhow::Result<Validated> {
        self.check_access()?;
        let (source, kafka_passthrough) = self.check_carriers_and_source()?;
        Ok(Validated { config: self, source, kafka_passthrough })
    }

    /// Roles, carriers and source: the `configuration` line of `ttpulse check`.
    pub(crate) fn check_carriers_and_source(&self) -> anyhow::Result<(SourceConfig, Vec<(String, String)>)> {
        self.check_roles_and_carriers()?;
        let kafka_passthrough = kafka_passthrough();
        if self.carriers.kafka_brokers.is_some() {
            kafka::check_guarded(&kafka_passthrough).map_err(anyhow::Error::msg)?;
        }
        // (The embedded mode uses no Redis: a URL it ignores is not checked.)
        if let (Some(_), Some(url)) = (&self.carriers.kafka_brokers, &self.carriers.redis_url) {
            ttpulse_actors::cache::redis::client(url, self.carriers.redis_ca_file.as_deref())
                .with_context(|| format!("TTPULSE_REDIS_URL {}", redact_url(url)))?;
        }
        Ok((self.source_config()?, kafka_passthrough))
    }

    fn check_roles_and_carriers(&self) -> anyhow::Result<()> {
        if self.roles.is_empty() {
            bail!("TTPULSE_ROLES names no role; use some of ingester,processor,cache,api");
        }
        if self.carriers.kafka_brokers.is_none() {
            if !self.runs_all_roles() {
                bail!(
                    "running only some roles ({}) needs the distributed carriers: set TTPULSE_KAFKA_BROKERS \
                     (and TTPULSE_REDIS_URL for the cache and api roles)",
                    self.roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(",")
                );
            }
        } else if (self.has(Role::Cache) || self.has(Role::Api)) && self.carriers.redis_url.is_none() {
            bail!("the cache and api roles need TTPULSE_REDIS_URL in distributed mode (TTPULSE_KAFKA_BROKERS is set)");
        }
        Ok(())
    }

    fn source_config(&self) -> anyhow::Result<SourceConfig> {
        let source = &self.source;
        Ok(match source.kind {
            SourceKind::None => SourceConfig::None,
            SourceKind::Simulator if source.sim_rate == 0 => SourceConfig::None,
            SourceKind::Simulator => SourceConfig::Simulator {
                rate: source.sim_rate,
                seed: source.sim_seed.unwrap_or_else(|| {
                    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
                }),
            },
            SourceKind::Replay => {
                let Some(path) = &source.replay_file else {
                    bail!("TTPULSE_SOURCE=replay needs TTPULSE_REPLAY_FILE (the JSON-lines file to replay)");
                };
                if !path.is_file() {
                    bail!("the replay file {} does not exist or is not a file", path.display());
                }
                SourceConfig::Replay { path: path.clone(), rate: source.replay_rate }
            }
        })
    }

    /// Token, admin and ingest settings (the JWKS file read and parsed): the `security` line of
    /// `ttpulse check`.
    pub(crate) fn check_access(&self) -> anyhow::Result<()> {
        let access = &self.access;
        match (&access.auth_hs256_secret, &access.auth_jwks_file) {
            (Some(_), Some(_)) => bail!("set TTPULSE_AUTH_HS256_SECRET or TTPULSE_AUTH_JWKS_FILE, not both"),
            (Some(secret), None) => ensure!(secret.len() >= 32, "TTPULSE_AUTH_HS256_SECRET must be at least 32 bytes"),
            (None, Some(path)) => {
                crate::http::auth::read_jwks(path)?;
            }
            (None, None) if access.market_data == MarketAccess::Token => {
                bail!("TTPULSE_MARKET_DATA=token needs TTPULSE_AUTH_HS256_SECRET or TTPULSE_AUTH_JWKS_FILE")
            }
            _ => {}
        }
        if access.admin_access == AdminAccess::Token && access.admin_token.is_none() {
            bail!("TTPULSE_ADMIN_ACCESS=token needs TTPULSE_ADMIN_TOKEN");
        }
        if let Some(token) = &access.ingest_token {
            ensure!(token.len() >= 32, "TTPULSE_INGEST_TOKEN must be at least 32 bytes");
        }
        // Anyone on the network could write events: the ingester served on a non-loopback
        // address without a token.
        if self.has(Role::Ingester) && access.ingest_token.is_none() && !self.server.http_addr.ip().is_loopback() {
            bail!(
                "POST /api/ingest would be open to anyone who reaches {}: set TTPULSE_INGEST_TOKEN, or listen on \
                 loopback only (TTPULSE_HTTP_ADDR=127.0.0.1:PORT)",
                self.server.http_addr
            );
        }
        Ok(())
    }
}

fn kafka_passthrough() -> Vec<(String, String)> {
    kafka::settings_from_env(std::env::vars(), "TTPULSE_KAFKA_", &["BROKERS", "PARTITIONS", "REPLICATION", "GROUP"])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With two mistakes, `run` names the one it always named first: the access setting (the
    /// JWKS file included), before the roles and carriers.
    #[test]
    fn access_settings_are_reported_before_roles_and_carriers() {
        let mut config = Config::for_tests(std::env::temp_dir());
        config.roles = vec![Role::Api];
        config.access.auth_hs256_secret = Some("x".repeat(32));
        config.access.auth_jwks_file = Some("/nonexistent/jwks.json".into());
        let err = format!("{:#}", config.clone().validate().expect_err("refused"));
        assert_eq!(err, "set TTPULSE_AUTH_HS256_SECRET or TTPULSE_AUTH_JWKS_FILE, not both");
        config.access.auth_hs256_secret = None;
        let err = format!("{:#}", config.validate().expect_err("refused"));
        assert!(err.starts_with("cannot read TTPULSE_AUTH_JWKS_FILE /nonexistent/jwks.json"), "{err}");
    }
}
