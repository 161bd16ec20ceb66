//! Limits on what clients may take: WebSocket sessions per process and per user, the rate of
//! new sessions, and the ingest rate. Every refusal is counted in `ttpulse_refusals_total`
//! with its reason and answered with a clear message.

use std::num::NonZeroU32;
use std::sync::Arc;

use dashmap::DashMap;
use std::net::IpAddr;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ttpulse_actors::metrics::Metrics;

use super::error::ApiError;
use crate::config::Config;

pub struct Limits {
    max_connections: i64,
    per_user: usize,
    users: Arc<DashMap<String, usize>>,
    /// 0: no limit.
    per_address: usize,
    addresses: Arc<DashMap<IpAddr, usize>>,
    connect_rate: Option<DefaultDirectRateLimiter>,
    connect_rate_per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    ingest_rate: Option<(DefaultDirectRateLimiter, u32)>,
    metrics: Arc<Metrics>,
}

/// An admitted session's places (its user's, its address's); dropping it frees them.
pub struct Ticket {
    users: Arc<DashMap<String, usize>>,
    user: Option<String>,
    addresses: Arc<DashMap<IpAddr, usize>>,
    address: Option<IpAddr>,
}

/// One place less for `key` in `counts`; the entry goes when it reaches 0.
fn release<K: std::hash::Hash + Eq>(counts: &DashMap<K, usize>, key: &K) {
    if let Some(mut count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
    }
    counts.remove_if(key, |_, count| *count == 0);
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(user) = &self.user {
            release(&self.users, user);
        }
        if let Some(address) = &self.address {
            release(&self.addresses, address);
        }
    }
}

/// The address a client connects from: the peer's, or, when the peer is a proxy on this host
/// (loopback), the client address it passed on: `X-Real-IP` (nginx sets it to the peer it saw),
/// else the last `X-Forwarded-For` entry (the one the nearest proxy appended; the first is
/// whatever the client wrote). Only a process on this host can set those headers and be
/// believed, and the dashboard's Next server strips them from what it forwards.
pub fn client_address(req: &actix_web::HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !peer.is_loopback() {
        return Some(peer);
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let forwarded = header("x-real-ip")
        .or_else(|| header("x-forwarded-for").and_then(|v| v.rsplit(',').next().map(str::to_owned)))
        .and_then(|v| v.trim().parse().ok());
    Some(forwarded.unwrap_or(peer))
}

fn limiter(per_second: u32) -> Option<DefaultDirectRateLimiter> {
    NonZeroU32::new(per_second).map(|rate| RateLimiter::direct(Quota::per_second(rate)))
}

impl Limits {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            max_connections: config.sessions.max_connections,
            per_user: config.sessions.max_connections_per_user,
            users: Arc::new(DashMap::new()),
            per_address: config.sessions.max_connections_per_address,
            addresses: Arc::new(DashMap::new()),
            connect_rate: limiter(config.sessions.ws_connect_rate),
            connect_rate_per_address: NonZeroU32::new(config.sessions.ws_connect_rate_per_address)
                .map(|rate| RateLimiter::keyed(Quota::per_second(rate))),
            ingest_rate: limiter(config.intake.ingest_max_rate).map(|l| (l, config.intake.ingest_max_rate)),
            metrics,
        }
    }

    fn refuse(&self, reason: &str, error: ApiError) -> ApiError {
        self.metrics.refusals.with_label_values(&[reason]).inc();
        error
    }

    /// Admits a new WebSocket session of `user` (its token subject, if any) from `address`. The
    /// address's own limits come first, so one address cannot spend everyone's connect rate.
    pub fn admit_session(&self, user: Option<&str>, address: Option<IpAddr>) -> Result<Ticket, ApiError> {
        if let (Some(limiter), Some(address)) = (&self.connect_rate_per_address, address) {
            if limiter.len() > 100_000 {
                limiter.retain_recent();
            }
            if limiter.check_key(&address).is_err() {
                return Err(self.refuse(
                    "connect_rate_per_address",
                    ApiError::TooManyRequests(format!(
                        "too many new sessions per second from {address}; retry shortly"
                    )),
                ));
            }
        }
        if let Some(address) = address
            && self.per_address > 0
            && self.addresses.get(&address).is_some_and(|count| *count >= self.per_address)
        {
            let max = self.per_address;
            return Err(self.refuse(
                "max_connections_per_address",
                ApiError::TooManyRequests(format!("{address} already holds {max} sessions")),
            ));
        }
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
        let mut ticket =
            Ticket { users: self.users.clone(), user: None, addresses: self.addresses.clone(), address: None };
        if let Some(address) = address.filter(|_| self.per_address > 0) {
            if !take_place(&self.addresses, address, self.per_address) {
                // Another session of the address got in since the check above.
                let max = self.per_address;
                return Err(self.refuse(
                    "max_connections_per_address",
                    ApiError::TooManyRequests(format!("{address} already holds {max} sessions")),
                ));
            }
            ticket.address = Some(address);
        }
        let Some(user) = user else { return Ok(ticket) };
        if !take_place(&self.users, user.to_owned(), self.per_user) {
            let max = self.per_user;
            // `ticket` is dropped here and gives the address's place back.
            return Err(self.refuse(
                "max_connections_per_user",
                ApiError::TooManyRequests(format!("`{user}` already holds {max} sessions")),
            ));
        }
        ticket.user = Some(user.to_owned());
        Ok(ticket)
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

/// Counts one more session of `key` unless it already holds `max`. The map's entry is released
/// on return, before the caller refuses (which may drop a ticket that takes the same lock).
fn take_place<K: Eq + std::hash::Hash>(counts: &DashMap<K, usize>, key: K, max: usize) -> bool {
    let mut count = counts.entry(key).or_insert(0);
    if *count >= max {
        return false;
    }
    *count += 1;
    true
}
