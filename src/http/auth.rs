//! Who may connect: user tokens (JWT, HS256 secret or RS256/ES256 keys from a JWKS file, with
//! expiry) naming the accounts a user may see, market data open or token-only, admin access by
//! loopback or token, ingest by its own token, and the Origin check of `/ws` (same origin, or the
//! allowlist).
//!
//! A token travels as `Authorization: Bearer <jwt>`, or for a browser in the `ttpulse_token`
//! cookie (which its WebSocket sends too, so the token is never in a logged URL), or as
//! `?access_token=<jwt>`. Claims: `sub`, `exp` (required) and `accounts` (the
//! account names whose positions and fills the holder may see; `["*"]` for all).

use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use anyhow::Context as _;
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use super::error::ApiError;
use crate::config::{AdminAccess, Config, MarketAccess, Validated};

/// The cookie a signed-in browser carries its token in (set HttpOnly and Secure by the sign-in
/// proxy in front of the dashboard).
pub const TOKEN_COOKIE: &str = "ttpulse_token";
const TOKEN_COOKIE_PREFIX: &str = "ttpulse_token=";
/// Stands for two `ttpulse_token` cookies: not a token, so it is refused like a bad one.
const AMBIGUOUS: &str = "two ttpulse_token cookies";

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer_of(value: &str) -> Option<String> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub accounts: Vec<String>,
}

/// What a request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No user authentication is configured: everything.
    Everything,
    /// An authenticated user: market data, and these accounts (`None`: every account), until
    /// `expires_at` (Unix seconds, the token's `exp`).
    User { subject: String, accounts: Option<Vec<String>>, expires_at: u64 },
    /// No token: market data only when it is open.
    Anonymous,
}

impl Access {
    /// When this access ends (a token's expiry), in Unix seconds.
    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Access::User { expires_at, .. } => Some(*expires_at),
            _ => None,
        }
    }

    /// The accounts this access may see; `None` means all.
    pub fn allowed_accounts(&self) -> Option<Vec<String>> {
        match self {
            Access::Everything => None,
            Access::User { accounts, .. } => accounts.clone(),
            Access::Anonymous => Some(Vec::new()),
        }
    }
}

enum Keys {
    Hs256(DecodingKey),
    Jwks(jsonwebtoken::jwk::JwkSet),
}

pub struct Auth {
    /// Where refusals are counted (set once the pipeline's metrics exist).
    metrics: std::sync::OnceLock<std::sync::Arc<ttpulse_actors::metrics::Metrics>>,
    keys: Option<Keys>,
    market: MarketAccess,
    admin: AdminAccess,
    admin_token: Option<String>,
    ingest_token: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    origins: Vec<String>,
}

/// The keys of a JWKS file, or why there are none (`Config::validate` reads it too, so that a
/// bad file is reported in the order `run` always did).
pub(crate) fn read_jwks(path: &std::path::Path) -> anyhow::Result<jsonwebtoken::jwk::JwkSet> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read TTPULSE_AUTH_JWKS_FILE {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a JWKS document", path.display()))
}

impl Auth {
    pub fn from_config(config: &Validated) -> anyhow::Result<Self> {
        // The rules (one key kind, lengths, what needs a token) were checked by
        // `Config::validate`; what is left is reading the keys.
        let keys = match (&config.access.auth_hs256_secret, &config.access.auth_jwks_file) {
            (Some(secret), _) => Some(Keys::Hs256(DecodingKey::from_secret(secret.as_bytes()))),
            (None, Some(path)) => Some(Keys::Jwks(read_jwks(path)?)),
            (None, None) => None,
        };
        Ok(Self {
            metrics: std::sync::OnceLock::new(),
            keys,
            market: config.access.market_data,
            admin: config.access.admin_access,
            admin_token: config.access.admin_token.clone(),
            ingest_token: config.access.ingest_token.clone(),
            issuer: config.access.auth_issuer.clone(),
            audience: config.access.auth_audience.clone(),
            origins: config.access.ws_allowed_origins.iter().map(|o| o.trim_end_matches('/').to_owned()).collect(),
        })
    }

    pub fn count_refusals_in(&self, metrics: std::sync::Arc<ttpulse_actors::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    fn refused(&self, reason: &str, error: ApiError) -> ApiError {
        if let Some(metrics) = self.metrics.get() {
            metrics.refusals.with_label_values(&[reason]).inc();
        }
        error
    }

    /// The user's token: `Authorization: Bearer` (an API client, or an auth proxy in front),
    /// else the `ttpulse_token` cookie (a signed-in browser: sent with the page's own requests
    /// and its WebSocket, never in a URL), else `?access_token=` (kept for older clients).
    fn bearer(req: &HttpRequest) -> Option<String> {
        let from_header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_of);
        let from_cookie = || {
            let mut tokens = req
                .headers()
                .get_all(header::COOKIE)
                .filter_map(|v| v.to_str().ok())
                .flat_map(|cookies| cookies.split(';'))
                .filter_map(|pair| pair.trim().strip_prefix(TOKEN_COOKIE_PREFIX));
            let first = tokens.next().map(str::to_owned);
            // Two token cookies (one planted by a sibling site?) are never guessed between.
            if tokens.next().is_some() { Some(String::from(AMBIGUOUS)) } else { first }
        };
        from_header.or_else(from_cookie).or_else(|| {
            req.query_string().split('&').find_map(|pair| pair.strip_prefix("access_token=")).map(str::to_owned)
        })
    }

    fn verify(&self, keys: &Keys, token: &str) -> Result<Claims, ApiError> {
        let unauthorized = |reason: String| ApiError::Unauthorized(format!("invalid token: {reason}"));
        let header = decode_header(token).map_err(|e| unauthorized(e.to_string()))?;
        let (key, algorithm) = match keys {
            Keys::Hs256(key) => (key.clone(), Algorithm::HS256),
            Keys::Jwks(set) => {
                let kid = header.kid.clone().ok_or_else(|| unauthorized("no `kid` in its header".into()))?;
                let jwk = set.find(&kid).ok_or_else(|| unauthorized(format!("unknown key `{kid}`")))?;
                if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
                    return Err(unauthorized(format!("algorithm {:?} is not accepted", header.alg)));
                }
                (DecodingKey::from_jwk(jwk).map_err(|e| unauthorized(e.to_string()))?, header.alg)
            }
        };
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp", "sub"];
        validation.validate_nbf = true;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = 5;
        decode::<Claims>(token, &key, &validation).map(|data| data.claims).map_err(|e| unauthorized(e.to_string()))
    }

    /// What the request may see. A token that is present but invalid or expired is refused
    /// (401), never ignored.
    pub fn access(&self, req: &HttpRequest) -> Result<Access, ApiError> {
        let Some(keys) = &self.keys else { return Ok(Access::Everything) };
        let Some(token) = Self::bearer(req) else {
            return match self.market {
                MarketAccess::Open => Ok(Access::Anonymous),
                MarketAccess::Token => Err(self
                    .refused("no_token", ApiError::Unauthorized("a token is required (Authorization: Bearer)".into()))),
            };
        };
        let claims = self.verify(keys, &token).map_err(|e| self.refused("invalid_token", e))?;
        let accounts = if claims.accounts.iter().any(|a| a == "*") { None } else { Some(claims.accounts) };
        Ok(Access::User { subject: claims.sub, accounts, expires_at: claims.exp })
    }

    /// Refuses a request for admin endpoints unless it comes from loopback or bears the admin
    /// token, as configured.
    pub fn check_admin(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_of);
        let presented = presented.as_deref();
        let token_ok = match (&self.admin_token, presented) {
            (Some(expected), Some(given)) => constant_time_eq(expected.as_bytes(), given.as_bytes()),
            _ => false,
        };
        let loopback = req.peer_addr().map(|a| a.ip()).is_some_and(|ip: IpAddr| ip.is_loopback());
        let allowed = match self.admin {
            AdminAccess::Open => true,
            AdminAccess::Token => token_ok,
            AdminAccess::LoopbackOrToken => loopback || token_ok,
        };
        if allowed {
            Ok(())
        } else if presented.is_some() {
            Err(self.refused("admin", ApiError::Forbidden("wrong admin token".into())))
        } else {
            Err(self.refused(
                "admin",
                ApiError::Unauthorized(
                    "admin endpoints need the admin token (Authorization: Bearer) or loopback".into(),
                ),
            ))
        }
    }

    /// Refuses `POST /api/ingest` without the ingest token, when one is configured. (Without
    /// one, the server listens on loopback only: `check_ingest_exposure` makes sure of it.)
    pub fn check_ingest(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(expected) = &self.ingest_token else { return Ok(()) };
        let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_of);
        let presented = presented.as_deref();
        match presented {
            Some(given) if constant_time_eq(expected.as_bytes(), given.as_bytes()) => Ok(()),
            Some(_) => Err(self.refused("ingest_token", ApiError::Forbidden("wrong ingest token".into()))),
            None => Err(self.refused(
                "ingest_token",
                ApiError::Unauthorized("ingest needs the ingest token (Authorization: Bearer)".into()),
            )),
        }
    }

    /// Refuses a WebSocket upgrade that a page of another site started: its `Origin` must be
    /// this server's own (the `Host` it was reached by, or the `X-Forwarded-Host` a proxy in
    /// front of it passed on) or on the allowlist. Without an allowlist, a request with no
    /// `Origin` (not a browser) is let through; with one, it is refused.
    pub fn check_origin(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let Some(origin) = origin else {
            if self.origins.is_empty() {
                return Ok(());
            }
            return Err(self.refused("origin", ApiError::Forbidden("an Origin is required to open /ws".into())));
        };
        let origin = origin.trim_end_matches('/');
        let authority = match origin.split_once("://") {
            Some((scheme, rest)) if scheme == "http" || scheme == "https" => rest,
            _ => "",
        };
        let own = ["host", "x-forwarded-host"].iter().any(|name| {
            req.headers()
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|host| !authority.is_empty() && host.trim().eq_ignore_ascii_case(authority))
        });
        if own || self.origins.iter().any(|o| o == origin) {
            Ok(())
        } else {
            Err(self.refused(
                "origin",
                ApiError::Forbidden(format!(
                    "origin `{origin}` is not this server's and not in TTPULSE_WS_ALLOWED_ORIGINS; it may not open /ws"
                )),
            ))
        }
    }
}

/// The host names this server answers to (against DNS rebinding).
#[derive(Debug, Clone)]
pub struct HostPolicy {
    names: Vec<String>,
    any: bool,
}

/// What the caller may see ([`Auth::access`]), as a handler argument: the handler runs only for
/// a request that `access` lets in. Put it after the other extractors: it is checked only once
/// they succeeded, so a malformed request is refused (400) before the token is looked at and
/// counted as a refusal.
pub struct Caller(pub Access);

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // actix calls every extractor's `from_request` up front and polls them in order, so the
        // check waits in the future until the extractors before it are done.
        let req = req.clone();
        Box::pin(async move { Ok(Caller(web::Data::<Auth>::extract(&req).await?.access(&req)?)) })
    }
}

/// A request the admin endpoints let in ([`Auth::check_admin`]), as a handler argument; put it
/// after the other extractors, as [`Caller`].
pub struct Admin;

impl FromRequest for Admin {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            web::Data::<Auth>::extract(&req).await?.check_admin(&req)?;
            Ok(Admin)
        })
    }
}

impl HostPolicy {
    pub fn from_config(config: &Config) -> Self {
        let names: Vec<String> = config.access.allowed_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        Self { any: names.iter().any(|h| h == "*"), names }
    }

    /// Whether `host` (a `Host` header: name or address, maybe with a port) is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        }
        .to_ascii_lowercase();
        name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || self.names.contains(&name)
    }
}

/// Refuses a request whose `Host` is not one of this server's (421): a web page whose DNS name
/// was rebound to this machine can then neither read nor write through the user's browser.
pub async fn allowed_host(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let policy = req.app_data::<actix_web::web::Data<HostPolicy>>().cloned();
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if let Some(policy) = policy
        && !policy.allows(&host)
    {
        return Err(ApiError::MisdirectedRequest(format!(
            "this server does not answer to host `{host}`; add it to TTPULSE_ALLOWED_HOSTS"
        ))
        .into());
    }
    next.call(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
