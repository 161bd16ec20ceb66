//! Limits on what clients may take: WebSocket sessions per process and per user, the rate of
//! new sessions, and the ingest rate. Every refusal is counted in `ttpulse_refusals_total`
//! with its reason and answered with a clear message.

use std::num::NonZeroU32;
use std::sync::Arc;

use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ttpulse_actors::metrics::Metrics;

use super::error::ApiError;
use crate::config::Config;

pub struct Limits {
    max_connections: i64,
    per_user: usize,
    users: Arc<DashMap<String, usize>>,
    connect_rate: Option<DefaultDirectRateLimiter>,
    ingest_rate: Option<(DefaultDirectRateLimiter, u32)>,
    metrics: Arc<Metrics>,
}

/// A user's admitted session; dropping it frees the place.
pub struct Ticket {
    users: Arc<DashMap<String, usize>>,
    user: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(mut count) = self.users.get_mut(&self.user) {
            *count = count.saturating_sub(1);
        }
        self.users.remove_if(&self.user, |_, count| *count == 0);
    }
}

fn limiter(per_second: u32) -> Option<DefaultDirectRateLimiter> {
    NonZeroU32::new(per_second).map(|rate| RateLimiter::direct(Quota::per_second(rate)))
}

impl Limits {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            max_connections: config.max_connections,
            per_user: config.max_connections_per_user,
            users: Arc::new(DashMap::new()),
            connect_rate: limiter(config.ws_connect_rate),
            ingest_rate: limiter(config.ingest_max_rate).map(|l| (l, config.ingest_max_rate)),
            metrics,
        }
    }

    fn refuse(&self, reason: &str, error: ApiError) -> ApiError {
        self.metrics.refusals.with_label_values(&[reason]).inc();
        error
    }

    /// Admits a new WebSocket session of `user` (its token subject, if any).
    pub fn admit_session(&self, user: Option<&str>) -> Result<Option<Ticket>, ApiError> {
        if self.metrics.ws_connections.get() >= self.max_connections {
            let max = self.max_connections;
            return Err(self.refuse(
                "max_connections",
                ApiError::Full(format!("this server holds its maximum of {max} sessions; retry later or elsewhere")),
            ));
        }
        if let Some(limiter) = &self.connect_rate
            && limiter.check().is_err()
        {
            return Err(self.refuse(
                "connect_rate",
                ApiError::TooManyRequests("too many new sessions per second; retry shortly".into()),
            ));
        }
        let Some(user) = user else { return Ok(None) };
        let mut count = self.users.entry(user.to_owned()).or_insert(0);
        if *count >= self.per_user {
            let max = self.per_user;
            drop(count);
            return Err(self.refuse(
                "max_connections_per_user",
                ApiError::TooManyRequests(format!("`{user}` already holds {max} sessions")),
            ));
        }
        *count += 1;
        Ok(Some(Ticket { users: self.users.clone(), user: user.to_owned() }))
    }

    /// Admits `events` more ingested events under the ingest rate.
    pub fn admit_ingest(&self, events: usize) -> Result<(), ApiError> {
        let Some((limiter, rate)) = &self.ingest_rate else { return Ok(()) };
        let n = NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.refuse(
                "ingest_rate",
                ApiError::TooManyRequests(format!("over the ingest rate of {rate} events/s; retry shortly")),
            )),
            Err(_) => Err(self.refuse(
                "ingest_rate",
                ApiError::TooManyRequests(format!(
                    "{events} events in one request exceed the ingest rate of {rate} events/s"
                )),
            )),
        }
    }

    pub fn count_refusal(&self, reason: &str) {
        self.metrics.refusals.with_label_values(&[reason]).inc();
    }
}
