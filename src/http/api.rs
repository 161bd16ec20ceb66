//! The public API: snapshot reads, candles, instruments, ingest, and the WebSocket upgrade.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::json;
use ttpulse_actors::cache::Filter;
use ttpulse_actors::domain::ids::{Account, InvalidAccount};
use ttpulse_actors::domain::selection::UnknownInstrument;
use ttpulse_actors::domain::trace_context::{TRACEPARENT, from_traceparent};
use ttpulse_actors::domain::{Interval, RawEvent};
use ttpulse_actors::handles::DbQuery;
use ttpulse_actors::messages::{FillCursor, IngestError, QueryCandles, QueryFills, QueryPnl, QueryTrades};
use ttpulse_actors::session::{SessionUser, start_session};

use super::auth::{Access, Auth, Caller};
use super::error::ApiError;
use super::limits::Limits;
use crate::config::Config;
use crate::wiring::Pipeline;

/// The accounts a read covers: what was asked (`None`: all), narrowed to what the access
/// allows. Asking for an account the access does not grant is refused, not silently narrowed.
fn account_filter(access: &Access, requested: Option<&str>) -> Result<Filter, ApiError> {
    let requested = match requested {
        None => Filter::All,
        Some(list) => Filter::accounts(&split_list(list)).map_err(invalid_account)?,
    };
    let Some(allowed) = access.allowed_accounts() else { return Ok(requested) };
    match requested {
        Filter::All => Ok(Filter::Only(allowed)),
        Filter::Only(list) => match list.iter().find(|a| !allowed.contains(a)) {
            Some(denied) if matches!(access, Access::Anonymous) => {
                Err(ApiError::Unauthorized(format!("account `{denied}` needs a token (Authorization: Bearer)")))
            }
            Some(denied) => Err(ApiError::Forbidden(format!("your token does not grant account `{denied}`"))),
            None => Ok(Filter::Only(list)),
        },
    }
}

/// `a,b,c` into a list; empty parts are ignored.
fn split_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[derive(Deserialize)]
pub struct SnapshotQuery {
    instruments: Option<String>,
    positions: Option<String>,
}

/// `GET /api/snapshot[?instruments=A,B][&positions=ACC1]`: current state with each key's seq.
#[get("/api/snapshot")]
pub async fn snapshot(
    pipeline: web::Data<Pipeline>,
    query: web::Query<SnapshotQuery>,
    Caller(access): Caller,
) -> Result<HttpResponse, ApiError> {
    let instrument_filter = match &query.instruments {
        None => Filter::All,
        Some(list) => Filter::instruments(&split_list(list), &pipeline.catalog).map_err(unknown_instrument)?,
    };
    let accounts = account_filter(&access, query.positions.as_deref())?;
    Ok(HttpResponse::Ok().json(pipeline.store.snapshot(&instrument_filter, &accounts)))
}

/// `GET /api/openapi.json`: the OpenAPI 3.1 description of this HTTP API.
#[get("/api/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(include_str!("openapi.json"))
}

/// `GET /api/instruments`: the catalog.
#[get("/api/instruments")]
pub async fn instruments(pipeline: web::Data<Pipeline>) -> HttpResponse {
    let list: Vec<_> = pipeline
        .catalog
        .iter()
        .map(|s| {
            json!({
                "symbol": s.symbol,
                "description": s.description,
                "tick_size": s.tick_size.to_string(),
                "multiplier": s.multiplier.to_string(),
                "price_format": s.price_format.as_str(),
            })
        })
        .collect();
    HttpResponse::Ok().json(list)
}

#[derive(Deserialize)]
pub struct PositionsQuery {
    account: Option<String>,
}

/// `GET /api/positions[?account=ACC1]`.
#[get("/api/positions")]
pub async fn positions(
    pipeline: web::Data<Pipeline>,
    query: web::Query<PositionsQuery>,
    Caller(access): Caller,
) -> Result<HttpResponse, ApiError> {
    let accounts = account_filter(&access, query.account.as_deref())?;
    Ok(HttpResponse::Ok().json(pipeline.store.snapshot(&Filter::none(), &accounts).positions))
}

#[derive(Deserialize)]
pub struct CandlesQuery {
    symbol: Option<String>,
    interval: Option<String>,
    since: Option<i64>,
    limit: Option<i64>,
}

/// `limit` of a history read: 1 to 5000, `default` when absent.
fn history_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=5_000).contains(&limit) {
        return Err(ApiError::bad_request("bad_query", format!("`limit` must be between 1 and 5000, got {limit}")));
    }
    Ok(limit)
}

/// A symbol of the catalog, or the refusal.
fn known_symbol(pipeline: &Pipeline, symbol: &str) -> Result<(), ApiError> {
    pipeline.catalog.symbol(symbol).map(|_| ()).map_err(unknown_instrument)
}

fn unknown_instrument(e: UnknownInstrument) -> ApiError {
    ApiError::bad_request("unknown_instrument", e.to_string())
}

/// The `interval` query parameter: `1s` or `1m` (the default).
fn interval_param(text: Option<&str>) -> Result<Interval, ApiError> {
    let text = text.unwrap_or("1m");
    Interval::parse(text)
        .ok_or_else(|| ApiError::bad_request("bad_query", format!("`interval` must be `1s` or `1m`, got `{text}`")))
}

/// The `symbol` a read requires, known to the catalog.
fn required_symbol(pipeline: &Pipeline, symbol: &Option<String>) -> Result<String, ApiError> {
    let Some(symbol) = symbol.clone() else {
        return Err(ApiError::bad_request("bad_query", "`symbol` is required"));
    };
    known_symbol(pipeline, &symbol)?;
    Ok(symbol)
}

/// Asks the database reader, mapping what can go wrong (no database, reader gone, failed
/// query) to a 503.
async fn read_database<Q: DbQuery>(pipeline: &Pipeline, query: Q) -> Result<Q::Answer, ApiError> {
    let Some(db_reader) = &pipeline.db_reader else {
        return Err(ApiError::Unavailable("this process has no database".into()));
    };
    db_reader.read(query).await.map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// `GET /api/candles?symbol=ESZ6&interval=1s|1m&limit=100`: the latest candles, oldest first.
#[get("/api/candles")]
pub async fn candles(
    pipeline: web::Data<Pipeline>,
    query: web::Query<CandlesQuery>,
    _: Caller,
) -> Result<HttpResponse, ApiError> {
    let symbol = required_symbol(&pipeline, &query.symbol)?;
    let interval = interval_param(query.interval.as_deref())?;
    let limit = history_limit(query.limit, 100)?;
    let candles = read_database(&pipeline, QueryCandles { symbol, interval, since: query.since, limit }).await?;
    Ok(HttpResponse::Ok().json(candles))
}

#[derive(Deserialize)]
pub struct FillsQuery {
    account: Option<String>,
    symbol: Option<String>,
    since_seq: Option<u64>,
    from: Option<i64>,
    to: Option<i64>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// The one account a read of account history names: required, valid, and granted.
fn one_account(access: &Access, account: Option<&str>) -> Result<String, ApiError> {
    let Some(account) = account else {
        return Err(ApiError::bad_request("bad_query", "`account` is required"));
    };
    if account.contains(',') || account == "*" {
        return Err(ApiError::bad_request("bad_query", "`account` names one account"));
    }
    let account = Account::parse(account).map_err(invalid_account)?;
    account_filter(access, Some(account.as_str()))?;
    Ok(account.to_string())
}

fn invalid_account(e: InvalidAccount) -> ApiError {
    ApiError::bad_request("invalid_account", e.to_string())
}

/// Start of the UTC day holding `micros`: the trading day when a read names no time.
fn day_start(micros: i64) -> i64 {
    const DAY: i64 = 86_400_000_000;
    micros - micros.rem_euclid(DAY)
}

/// `GET /api/fills?account=ACC1[&symbol=][&since_seq=][&from=][&to=][&cursor=][&limit=]`: the
/// account's fills from the database, scoped by the caller's entitlements. Newest first, for the
/// trading day (UTC) of `to` (default: now) unless `from` says otherwise, paged by `cursor` (the `next` of the
/// previous page). With `symbol` and `since_seq`: every fill after that seq, oldest first (to
/// recover the account lane after a disconnect).
#[get("/api/fills")]
pub async fn fills(
    pipeline: web::Data<Pipeline>,
    query: web::Query<FillsQuery>,
    Caller(access): Caller,
) -> Result<HttpResponse, ApiError> {
    let account = one_account(&access, query.account.as_deref())?;
    if let Some(symbol) = &query.symbol {
        known_symbol(&pipeline, symbol)?;
    }
    if query.since_seq.is_some() && query.symbol.is_none() {
        return Err(ApiError::bad_request(
            "bad_query",
            "`since_seq` needs `symbol` (seqs count per account and instrument)",
        ));
    }
    let cursor = match &query.cursor {
        None => None,
        Some(text) => Some(parse_cursor(text).ok_or_else(|| {
            ApiError::bad_request("bad_query", format!("`cursor` `{text}` is not a `next` this API gave"))
        })?),
    };
    let limit = history_limit(query.limit, 100)?;
    let reading_a_lane = query.since_seq.is_some();
    // No `from`: the trading day of `to`, or of now.
    let from = match (query.from, reading_a_lane) {
        (Some(from), _) => Some(from),
        (None, false) => Some(day_start(query.to.unwrap_or_else(ttpulse_actors::health::now_micros))),
        (None, true) => None,
    };
    let request = QueryFills {
        account,
        symbol: query.symbol.clone(),
        since_seq: query.since_seq,
        from,
        to: query.to,
        cursor,
        limit,
    };
    let fills = read_database(&pipeline, request).await?;
    // A full page may have more after it.
    let next = (!reading_a_lane && fills.len() as i64 == limit)
        .then(|| fills.last().map(|f| format!("{}:{}:{}", f.ts, f.symbol, f.seq)))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "fills": fills, "next": next })))
}

/// `ts:symbol:seq`, as `next` gives it.
fn parse_cursor(text: &str) -> Option<FillCursor> {
    let mut parts = text.splitn(3, ':');
    let ts = parts.next()?.parse().ok()?;
    let symbol = parts.next()?.to_owned();
    let seq = parts.next()?.parse().ok()?;
    Some(FillCursor { ts, symbol, seq })
}

#[derive(Deserialize)]
pub struct PnlQuery {
    account: Option<String>,
    interval: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/pnl?account=ACC1[&interval=1s|1m][&from=][&to=][&limit=]`: the account's P&L over
/// time (realized, unrealized, total), sampled every second into 1 s and 1 min buckets, oldest
/// first; account data, scoped by the caller's token.
#[get("/api/pnl")]
pub async fn pnl(
    pipeline: web::Data<Pipeline>,
    query: web::Query<PnlQuery>,
    Caller(access): Caller,
) -> Result<HttpResponse, ApiError> {
    let account = one_account(&access, query.account.as_deref())?;
    let interval = interval_param(query.interval.as_deref())?;
    let limit = history_limit(query.limit, 300)?;
    let points =
        read_database(&pipeline, QueryPnl { account, interval, from: query.from, to: query.to, limit }).await?;
    Ok(HttpResponse::Ok().json(points))
}

#[derive(Deserialize)]
pub struct TradesQuery {
    symbol: Option<String>,
    before: Option<i64>,
    before_id: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/trades?symbol=ESZ6[&before=[&before_id=]][&limit=]`: time and sales, newest first
/// (by time, then event id). The next page: the last print's `ts` as `before` and its `event_id`
/// as `before_id` (`before` alone skips the prints that share the last print's time).
#[get("/api/trades")]
pub async fn trades(
    pipeline: web::Data<Pipeline>,
    query: web::Query<TradesQuery>,
    _: Caller,
) -> Result<HttpResponse, ApiError> {
    let symbol = required_symbol(&pipeline, &query.symbol)?;
    let limit = history_limit(query.limit, 100)?;
    let before = match (query.before, &query.before_id) {
        (None, None) => None,
        (Some(ts), event_id) => Some(ttpulse_actors::messages::TradeCursor { ts, event_id: event_id.clone() }),
        (None, Some(_)) => {
            return Err(ApiError::bad_request("bad_query", "`before_id` needs `before` (the print's `ts`)"));
        }
    };
    let trades = read_database(&pipeline, QueryTrades { symbol, before, limit }).await?;
    Ok(HttpResponse::Ok().json(trades))
}

/// `POST /api/ingest`: a JSON array of raw events. One invalid event refuses the whole request
/// (400, naming the event and the field). An event that is valid but whose effects cannot be
/// applied (a sum that would overflow) is refused alone by the processor: 400 naming it, with
/// the others applied. Answers once the events are stored.
#[post("/api/ingest")]
pub async fn ingest(
    pipeline: web::Data<Pipeline>,
    config: web::Data<Config>,
    limits: web::Data<Limits>,
    auth: web::Data<Auth>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.check_ingest(&req)?;
    // JSON only: a cross-site form post (text/plain, form-encoded) is refused before it is read.
    let json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        limits.count_refusal("content_type");
        return Err(ApiError::UnsupportedMediaType(
            "the ingest body must be sent as Content-Type: application/json".into(),
        ));
    }
    let body = read_limited(payload, config.intake.ingest_max_bytes).await?;
    let events = parse_ingest_body(&body, config.intake.ingest_max_events).inspect_err(|e| {
        if let ApiError::BadRequest { code: "malformed_json" | "invalid_event", .. } = e {
            pipeline.metrics.events_rejected.with_label_values(&["api"]).inc();
        }
    })?;
    limits.admit_ingest(events.len())?;
    // A client's sampled trace is continued by the events (a bad header is ignored, not refused).
    let trace = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(from_traceparent);
    let Some(intake) = &pipeline.intake else {
        return Err(ApiError::Unavailable("this process does not run the ingester role".into()));
    };
    let (receipt, durable) = match intake.ingest(events, trace).await {
        Err(e @ IngestError::Unavailable(_)) => return Err(ApiError::Unavailable(format!("{e}; nothing was applied"))),
        Err(IngestError::Invalid { index, error }) => {
            return Err(invalid_event(index, &error.field, &error.reason));
        }
        Err(IngestError::Hop { error, event_ids }) => {
            // The events have ids from here on, and a resend must carry them: in the distributed
            // mode a delivery can fail after others of the batch reached the broker, and a
            // resend without ids would count those twice (with them, they are duplicates).
            let applied = if pipeline.distributed { "some may have been applied" } else { "nothing was applied" };
            return Err(ApiError::UnavailableWith {
                message: format!("{error}; {applied}: resend the events with the same event ids"),
                details: json!({ "event_ids": event_ids }),
            });
        }
        Ok(accepted) => accepted,
    };
    // Stored, or a clear answer that names the ids the events got: resending them with these
    // ids is a no-op for what was applied.
    let not_confirmed = |why: String| ApiError::UnavailableWith {
        message: format!("accepted but not confirmed stored: {why}; resend with the same event ids"),
        details: json!({ "event_ids": &receipt.event_ids }),
    };
    let confirm_timeout = std::time::Duration::from_millis(config.intake.ingest_confirm_timeout_ms);
    match actix_rt::time::timeout(confirm_timeout, durable.wait()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(not_confirmed(e.to_string())),
        Err(_) => {
            return Err(not_confirmed(format!(
                "no commit within {} ms (TTPULSE_INGEST_CONFIRM_TIMEOUT_MS; is the database reachable?)",
                confirm_timeout.as_millis()
            )));
        }
    }
    if let Some(first) = receipt.refused.first() {
        let applied = receipt.accepted;
        return Err(ApiError::BadRequest {
            code: "invalid_event",
            message: format!(
                "event {}: {}: {} ({} refused; the other events were applied: {applied} new, {} duplicates)",
                first.index,
                first.error.field,
                first.error.reason,
                receipt.refused.len(),
                receipt.duplicates
            ),
            details: json!({
                "index": first.index,
                "field": first.error.field,
                "refused": receipt.refused,
                "accepted": applied,
                "duplicates": receipt.duplicates,
                "event_ids": receipt.event_ids,
            }),
        });
    }
    Ok(HttpResponse::Ok().json(receipt))
}

/// Reads an ingest body: a non-empty JSON array of at most `max_events` raw events, each
/// decoded (not yet validated against the catalog). A refusal names the event and the field.
pub fn parse_ingest_body(body: &[u8], max_events: usize) -> Result<Vec<RawEvent>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}")))?;
    let serde_json::Value::Array(items) = value else {
        return Err(ApiError::bad_request("bad_request", "the body must be a JSON array of events"));
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("bad_request", "the array holds no events"));
    }
    if items.len() > max_events {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} events in one request; at most {max_events} (TTPULSE_INGEST_MAX_EVENTS)",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| RawEvent::from_value(item).map_err(|e| invalid_event(index, &e.field, &e.reason)))
        .collect()
}

/// Reads a request body of at most `limit` bytes.
async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    use futures_util::StreamExt as _;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("bad_request", format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes (TTPULSE_INGEST_MAX_BYTES)"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn invalid_event(index: usize, field: &str, reason: &str) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_event",
        message: format!("event {index}: {field}: {reason}"),
        details: json!({ "index": index, "field": field }),
    }
}

/// `GET /ws`: the live stream (see the session actor for the protocol).
#[get("/ws")]
pub async fn websocket(
    pipeline: web::Data<Pipeline>,
    auth: web::Data<Auth>,
    limits: web::Data<Limits>,
    req: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    auth.check_origin(&req)?;
    let access = auth.access(&req)?;
    let subject = match &access {
        Access::User { subject, .. } => Some(subject.as_str()),
        _ => None,
    };
    let ticket = limits.admit_session(subject, super::limits::client_address(&req))?;
    let Some(hub) = &pipeline.hub else {
        return Err(ApiError::Unavailable("this process does not run the api role".into()).into());
    };
    let ticket = Some(Box::new(ticket) as Box<dyn std::any::Any + Send>);
    start_session(
        &req,
        stream,
        hub.clone(),
        &pipeline.session,
        pipeline.metrics.clone(),
        SessionUser { allowed_accounts: access.allowed_accounts(), expires_at: access.expires_at(), ticket },
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        // Fuzzing the ingest body: any bytes give events or a 400/413 with a message, never a
        // panic or another status.
        #[test]
        fn any_body_gives_events_or_a_clear_refusal(body in prop::collection::vec(any::<u8>(), 0..600)) {
            check(&body)?;
        }

        #[test]
        fn array_shaped_bodies_give_events_or_a_clear_refusal(
            items in prop::collection::vec(
                prop_oneof![
                    Just("{}".to_owned()),
                    Just("null".to_owned()),
                    Just(r#"{"type":"trade","instrument":"ESZ6","price":"6850.25","qty":1,"aggressor":"buy"}"#.to_owned()),
                    Just(r#"{"type":"quote","instrument":"ESZ6","bid":1e400,"bid_qty":1,"ask":"x","ask_qty":1}"#.to_owned()),
                    ".{0,40}".prop_map(|s| serde_json::Value::from(s).to_string()),
                    any::<i64>().prop_map(|n| n.to_string()),
                ],
                0..20,
            ),
        ) {
            check(format!("[{}]", items.join(",")).as_bytes())?;
        }
    }

    fn check(body: &[u8]) -> Result<(), TestCaseError> {
        match parse_ingest_body(body, 10) {
            Ok(events) => prop_assert!(!events.is_empty() && events.len() <= 10),
            Err(e) => {
                use actix_web::ResponseError as _;
                let status = e.status_code().as_u16();
                prop_assert!(status == 400 || status == 413, "status {status}");
                prop_assert!(!e.to_string().is_empty());
            }
        }
        Ok(())
    }
}
