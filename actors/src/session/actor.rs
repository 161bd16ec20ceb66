//! `SessionActor`: one per WebSocket. It owns the connection (actix-web-actors, kept inside
//! this module), forwards the client's requests to the hub, and drains its outbox into the
//! socket when woken.
//!
//! Client messages: `{"op":"subscribe","instruments":[..],"positions":[..]}`, `{"op":"unsubscribe",..}`,
//! `{"op":"ping"}`. Server messages: `snapshot`, `update`, `pong`, `error` (the session stays
//! open after an error).

use std::cell::Cell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;
use opentelemetry::KeyValue;
use serde::Deserialize;

use super::hub::Hub;
use super::outbox::{Outbox, OutboxLimits};
use crate::domain::{Key, Lane};
use crate::health::now_micros;
use crate::messages::{
    Connect, Disconnect, QueryFills, SessionId, Subscribe, SubscribeError, Subscribed, Unsubscribe, Wake,
};
use crate::metrics::Metrics;

/// How often the server pings.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// A client silent (no pong, no message) this long is dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames written per wake before yielding to the actor's other work.
const DRAIN_BATCH: usize = 512;
/// Largest client frame accepted.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The WebSocket subprotocol of wire version 2: the updates due at one wake go out together in
/// `batch` frames (one write, not one per update). Without it a session speaks version 1.
pub const BATCH_PROTOCOL: &str = "ttpulse.v2";
/// The most a batch frame holds (unless one update alone is larger): also the largest frame
/// awc and actix-web-actors read by default. The next update starts another.
const BATCH_MAX_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct SessionConfig {
    pub outbox: OutboxLimits,
    /// Client messages a session may send per second (twice that in a burst); 0: no limit.
    pub message_rate: u32,
    /// Most names in one subscribe or unsubscribe (instruments plus positions).
    pub max_list: usize,
    /// Where a subscribe's missed fills are read from (the database reader), if anywhere.
    pub fills: Option<Recipient<QueryFills>>,
    /// Most fills one subscribe's recovery replays over all its lanes; beyond, `recovered: false`.
    pub max_recover: u64,
    /// A subscribe's `max_rate`: the default when it asks none, and the most it is granted.
    pub max_rates: MaxRates,
}

/// Client messages refused for the rate within one window before the session is closed (1008).
/// Low: a refused frame was still read off the socket (up to 64 KiB each) on a worker that
/// serves other sessions too, so a flood must end after little of it.
const ABUSE_LIMIT: u32 = 3;
const ABUSE_WINDOW: Duration = Duration::from_secs(10);
/// Bytes of client frames a session may send per second, and in a burst: a dashboard sends one
/// large subscribe when it connects (200 names and 200 recover seqs: under 40 KB) and small
/// ones after, so a client within the message rate cannot make the server parse megabytes: a
/// flooder of 64 KiB frames gets one parsed before it is refused, then cut off.
const BYTES_PER_SECOND: u32 = 32 * 1024;
const BYTES_BURST: u32 = 96 * 1024;

/// A session's budget of client messages: a token bucket, and what it refused lately.
struct MessageBudget {
    limiter: Option<governor::DefaultDirectRateLimiter>,
    /// Bytes, with the message rate (none without it).
    bytes: Option<governor::DefaultDirectRateLimiter>,
    refused: u32,
    window_start: Instant,
    /// Whether the client was told it is over the rate (once per window: a client that floods
    /// and never reads must not make the server queue an error per message).
    told: bool,
}

enum Admission {
    Admit,
    /// Refused; `true` the first time in the window (answer with an error).
    Refuse(bool),
    /// Refused too often: close the session.
    Close,
}

impl MessageBudget {
    fn new(rate: u32) -> Self {
        let limiter = std::num::NonZeroU32::new(rate).map(|rate| {
            let burst = rate.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
            governor::RateLimiter::direct(governor::Quota::per_second(rate).allow_burst(burst))
        });
        let bytes = limiter.as_ref().map(|_| {
            let per_second = std::num::NonZeroU32::new(BYTES_PER_SECOND).unwrap_or(std::num::NonZeroU32::MAX);
            let burst = std::num::NonZeroU32::new(BYTES_BURST).unwrap_or(per_second);
            governor::RateLimiter::direct(governor::Quota::per_second(per_second).allow_burst(burst))
        });
        Self { limiter, bytes, refused: 0, window_start: Instant::now(), told: false }
    }

    /// A frame of `size` bytes: within both the message rate and the byte rate, or refused.
    fn admit(&mut self, size: usize) -> Admission {
        let Some(limiter) = &self.limiter else { return Admission::Admit };
        if self.window_start.elapsed() > ABUSE_WINDOW {
            (self.refused, self.told, self.window_start) = (0, false, Instant::now());
        }
        let cost =
            std::num::NonZeroU32::new(u32::try_from(size).unwrap_or(u32::MAX)).unwrap_or(std::num::NonZeroU32::MIN);
        let bytes_ok = self.bytes.as_ref().is_none_or(|bytes| matches!(bytes.check_n(cost), Ok(Ok(()))));
        if bytes_ok && limiter.check().is_ok() {
            return Admission::Admit;
        }
        self.refused = self.refused.saturating_add(1);
        if self.refused > ABUSE_LIMIT {
            return Admission::Close;
        }
        Admission::Refuse(!std::mem::replace(&mut self.told, true))
    }
}

/// The names a subscribe or an unsubscribe lists (each list may hold `"*"` for all).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Names {
    instruments: Vec<String>,
    positions: Vec<String>,
    /// Instruments whose prints (time and sales) to send.
    trades: Vec<String>,
}

impl Names {
    fn count(&self) -> usize {
        Self::count_of(&self.instruments, &self.positions, &self.trades)
    }

    fn count_of(instruments: &[String], positions: &[String], trades: &[String]) -> usize {
        instruments.len().saturating_add(positions.len()).saturating_add(trades.len())
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum ClientMessage {
    // The names are fields of their own (not a flattened `Names`): a flattened struct reads
    // only from a JSON object, and the array form (`["subscribe", [...]]`) must keep working.
    Subscribe {
        #[serde(default)]
        instruments: Vec<String>,
        #[serde(default)]
        positions: Vec<String>,
        /// Instruments (`"*"` for all) whose prints (time and sales) to send.
        #[serde(default)]
        trades: Vec<String>,
        /// Per `fills:<account>:<symbol>` key, the last seq the client holds: the fills after it
        /// are replayed from the database right after the snapshot.
        #[serde(default)]
        recover: std::collections::BTreeMap<String, u64>,
        /// Most updates per market key per second (0: as they come); the server grants at most
        /// its cap, and the server's default when absent.
        #[serde(default)]
        max_rate: Option<u32>,
    },
    Unsubscribe(Names),
    Ping,
}

impl ClientMessage {
    /// How many names the message lists.
    fn listed(&self) -> usize {
        match self {
            ClientMessage::Subscribe { instruments, positions, trades, .. } => {
                Names::count_of(instruments, positions, trades)
            }
            ClientMessage::Unsubscribe(names) => names.count(),
            ClientMessage::Ping => 0,
        }
    }
}

pub struct SessionActor {
    id: Option<SessionId>,
    hub: Addr<Hub>,
    outbox: Arc<Outbox>,
    last_heard: Instant,
    metrics: Arc<Metrics>,
    /// The accounts this session's user may see; `None` when any (no authentication).
    allowed_accounts: Option<Vec<String>>,
    /// Held while the session lives (e.g. its place under a per-user limit); freed on drop.
    _ticket: Option<Box<dyn std::any::Any + Send>>,
    budget: MessageBudget,
    max_list: usize,
    /// When the user's token expires (Unix seconds): the session closes then (4001).
    expires_at: Option<u64>,
    /// Where missed fills are read from (the database reader), if this process has one.
    fills: Option<Recipient<QueryFills>>,
    max_recover: u64,
    /// Lanes are being recovered: nothing is written until the `recovered` message is ready.
    recovering: bool,
    recovered: Option<String>,
    /// The server's default and cap for a subscribe's `max_rate` (0: none).
    rates: MaxRates,
    /// Set when the session is cut off for flooding: its connection is dropped, not drained.
    cut_off: Rc<Cell<bool>>,
    /// The client chose wire version 2 (`BATCH_PROTOCOL`): updates go out in `batch` frames.
    batched: bool,
}

/// The maximum rate a subscribe is granted: what it asks (or `default`), at most `cap`; 0 means
/// as fast as updates come (no resampling).
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxRates {
    pub default: u32,
    pub cap: u32,
}

impl MaxRates {
    pub fn grant(&self, asked: Option<u32>) -> u32 {
        let rate = asked.unwrap_or(self.default);
        match (rate, self.cap) {
            (_, 0) => rate,
            (0, cap) => cap,
            (rate, cap) => rate.min(cap),
        }
    }
}

/// How long a lane's recovery waits for the database to hold every fill up to the snapshot
/// (the processor publishes a fill a few milliseconds before its write commits).
const RECOVER_PATIENCE: Duration = Duration::from_secs(2);

/// One lane of a `recovered` message.
#[derive(Debug, serde::Serialize)]
struct RecoveredLane {
    key: String,
    /// The seq the client held, and the snapshot's: the fills between are in `fills`.
    from: u64,
    to: u64,
    recovered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    fills: Vec<crate::store::StoredFill>,
}

/// Reads the fills of `key` after `held` up to `now` (the snapshot's seq), oldest first: at
/// most `left` of them, what remains of the subscribe's bound `max`.
async fn recover_lane(
    fills: Option<&Recipient<QueryFills>>,
    key: &str,
    held: u64,
    now: Option<u64>,
    (left, max): (u64, u64),
) -> RecoveredLane {
    let mut lane = RecoveredLane {
        key: key.to_owned(),
        from: held,
        to: now.unwrap_or(held),
        recovered: false,
        reason: None,
        fills: Vec::new(),
    };
    let refuse = |mut lane: RecoveredLane, reason: &str| {
        lane.reason = Some(reason.to_owned());
        lane
    };
    let Some(now) = now else { return refuse(lane, "not a lane of this subscription") };
    let Some(Key::Fills { account, symbol }) = Key::parse(key) else { return refuse(lane, "not a fills key") };
    if held >= now {
        lane.recovered = true;
        return lane;
    }
    let missed = now.saturating_sub(held);
    if missed > left {
        return refuse(
            lane,
            &format!(
                "{missed} fills missed, more than {left} (a subscribe replays at most {max} in all): take the \
                 snapshot (GET /api/fills pages them)"
            ),
        );
    }
    let Some(fills) = fills else { return refuse(lane, "this process has no database") };
    let deadline = Instant::now() + RECOVER_PATIENCE;
    loop {
        let query = QueryFills {
            account: account.to_owned(),
            symbol: Some(symbol.to_owned()),
            since_seq: Some(held),
            from: None,
            to: None,
            cursor: None,
            limit: i64::try_from(missed).unwrap_or(i64::MAX),
        };
        match fills.send(query).await {
            Ok(Ok(rows)) if rows.len() as u64 >= missed => {
                lane.fills = rows.into_iter().filter(|f| f.seq <= now).collect();
                lane.recovered = lane.fills.len() as u64 == missed;
                if !lane.recovered {
                    return refuse(lane, "the stored lane has a gap");
                }
                return lane;
            }
            Ok(Ok(_)) if Instant::now() < deadline => actix_rt::time::sleep(Duration::from_millis(20)).await,
            Ok(Ok(_)) => return refuse(lane, "the database does not hold every missed fill yet"),
            Ok(Err(e)) => return refuse(lane, &format!("database read failed: {e}")),
            Err(e) => return refuse(lane, &format!("database reader unavailable: {e}")),
        }
    }
}

/// Close code of a session whose token expired: reconnect with a fresh token.
pub const TOKEN_EXPIRED: u16 = 4001;

/// Who a new session serves.
pub struct SessionUser {
    /// The accounts whose positions and fills the user may see (`None`: any).
    pub allowed_accounts: Option<Vec<String>>,
    /// When the user's token expires (Unix seconds); the session closes then (4001).
    pub expires_at: Option<u64>,
    /// Held while the session lives (e.g. its place under a per-user limit); freed on drop.
    pub ticket: Option<Box<dyn std::any::Any + Send>>,
}

/// Upgrades an HTTP request to a WebSocket served by a new `SessionActor`.
pub fn start_session(
    req: &HttpRequest,
    stream: web::Payload,
    hub: Addr<Hub>,
    config: &SessionConfig,
    metrics: Arc<Metrics>,
    user: SessionUser,
) -> Result<HttpResponse, actix_web::Error> {
    let actor = SessionActor {
        id: None,
        hub,
        outbox: Outbox::new(config.outbox),
        last_heard: Instant::now(),
        metrics,
        allowed_accounts: user.allowed_accounts,
        _ticket: user.ticket,
        budget: MessageBudget::new(config.message_rate),
        max_list: config.max_list,
        expires_at: user.expires_at,
        fills: config.fills.clone(),
        max_recover: config.max_recover,
        recovering: false,
        recovered: None,
        rates: config.max_rates,
        cut_off: Rc::default(),
        batched: offers_protocol(req, BATCH_PROTOCOL),
    };
    let (cut_off, batched) = (actor.cut_off.clone(), actor.batched);
    let mut response = ws::WsResponseBuilder::new(actor, req, stream).frame_size(MAX_FRAME_BYTES).start()?;
    // Answered here, from the one decision the session acts on: actix's own negotiation
    // (`protocols`) reads only the first `Sec-WebSocket-Protocol` header, and would answer no
    // protocol to a session that then speaks version 2.
    if batched {
        response.headers_mut().insert(
            actix_web::http::header::SEC_WEBSOCKET_PROTOCOL,
            actix_web::http::header::HeaderValue::from_static(BATCH_PROTOCOL),
        );
    }
    Ok(response.map_body(|_, body| DroppedWhenCutOff { body, cut_off, dropping: false }).map_into_boxed_body())
}

/// A session's outgoing byte stream, which ends in an error once the session was cut off for
/// flooding, after its close frame has been written: the server then drops the connection (the
/// kernel answers what the client still sends with a reset) instead of ending the response
/// normally, after which actix lingers, reading and discarding the flood at full speed on a
/// worker that serves other sessions too (measured: about 6 MB per cut-off session in 10 ms).
struct DroppedWhenCutOff {
    body: actix_web::body::BoxBody,
    cut_off: Rc<Cell<bool>>,
    /// The close frame went out with the last poll; the next one drops the connection.
    dropping: bool,
}

impl actix_web::body::MessageBody for DroppedWhenCutOff {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        let this = self.as_mut().get_mut();
        if this.dropping {
            return Poll::Ready(Some(Err("session cut off for flooding: connection dropped unread".into())));
        }
        match Pin::new(&mut this.body).poll_next(cx) {
            // Not the end yet: one more turn lets the dispatcher write the close frame first.
            Poll::Ready(None) if this.cut_off.get() => {
                this.dropping = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }
}

/// Whether the client lists `protocol` in `Sec-WebSocket-Protocol`, in any of the header's
/// fields (RFC 6455 allows several, logically one list).
fn offers_protocol(req: &HttpRequest, protocol: &str) -> bool {
    req.headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offered| offered.trim() == protocol)
}

/// Wire version 2's frame of updates: `{"type":"batch","v":2,"updates":[<update>,…]}`, each
/// update exactly as version 1 sends it alone (copied, not serialized again).
#[derive(Default)]
struct BatchFrame {
    text: String,
}

impl BatchFrame {
    const HEAD: &str = r#"{"type":"batch","v":2,"updates":["#;

    /// Adds an update; a frame that is full is returned, to be sent before this one's. A frame
    /// holding more than one update stays within `BATCH_MAX_BYTES`, its `,` and `]}` counted.
    fn push(&mut self, update: &str) -> Option<String> {
        let with_update = self.text.len() + ",".len() + update.len() + "]}".len();
        let full = (with_update > BATCH_MAX_BYTES && !self.text.is_empty()).then(|| self.finish());
        self.text.push_str(if self.text.is_empty() { Self::HEAD } else { "," });
        self.text.push_str(update);
        full.flatten()
    }

    /// The frame so far, if it holds any update; the next push starts a new one.
    fn finish(&mut self) -> Option<String> {
        if self.text.is_empty() {
            return None;
        }
        let mut text = std::mem::take(&mut self.text);
        text.push_str("]}");
        Some(text)
    }
}

/// The account in a `pos:<account>:<symbol>` or `fills:<account>:<symbol>` key.
fn account_of(key: &str) -> Option<&str> {
    Key::parse(key).and_then(|key| key.account())
}

/// Reads a client message; the error is the sentence sent back in an `error` message.
fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|e| format!("cannot read the message: {e}"))
}

fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "code": code, "message": message}).to_string()
}

impl SessionActor {
    fn heartbeat(&self, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| {
            if Instant::now().duration_since(act.last_heard) > CLIENT_TIMEOUT {
                tracing::info!(session = ?act.id, "client heartbeat timed out; closing");
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("heartbeat timeout".into()),
                }));
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
    }

    /// Whether a client frame (of any kind) is within the session's rate; a refused one is
    /// dropped (with one `rate_limited` error per window), and a flood closes the session.
    fn admit_frame(&mut self, size: usize, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        match self.budget.admit(size) {
            Admission::Admit => true,
            Admission::Refuse(first) => {
                self.metrics.refusals.with_label_values(&["ws_message_rate"]).inc();
                if first {
                    ctx.text(error_json(
                        "rate_limited",
                        "too many messages; those over the rate are dropped (the session closes if it goes on)",
                    ));
                }
                false
            }
            Admission::Close => {
                tracing::warn!(session = ?self.id, "client floods messages; closing");
                self.metrics.refusals.with_label_values(&["ws_message_flood"]).inc();
                self.cut_off.set(true);
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Policy,
                    description: Some("too many messages".into()),
                }));
                ctx.stop();
                false
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let message = match parse_client_message(text) {
            Ok(m) => m,
            Err(reason) => {
                ctx.text(error_json("bad_request", &reason));
                return;
            }
        };
        let Some(id) = self.id else {
            ctx.text(error_json("not_ready", "the session is still registering; retry"));
            return;
        };
        match message {
            // The server's clock, so that a client can mark quiet instruments stale against the
            // clock their exchange times come from rather than its own.
            ClientMessage::Ping => ctx.text(format!(r#"{{"type":"pong","server_ts":{}}}"#, now_micros())),
            ClientMessage::Subscribe { .. } | ClientMessage::Unsubscribe(_) if message.listed() > self.max_list => {
                self.metrics.refusals.with_label_values(&["max_subscriptions"]).inc();
                ctx.text(error_json(
                    "bad_subscription",
                    &format!("at most {} names (instruments plus positions) in one message", self.max_list),
                ));
            }
            ClientMessage::Subscribe { recover, .. } if recover.len() > self.max_list => {
                ctx.text(error_json("bad_subscription", &format!("at most {} lanes to recover", self.max_list)));
            }
            ClientMessage::Subscribe { instruments, positions, trades, recover, max_rate } => {
                if instruments.is_empty() && positions.is_empty() && trades.is_empty() {
                    ctx.text(error_json("bad_request", "subscribe needs `instruments`, `positions` or `trades`"));
                    return;
                }
                let positions = match &self.allowed_accounts {
                    None => positions,
                    // "*" means every account the user may see.
                    Some(allowed) if positions.iter().any(|p| p == "*") => allowed.clone(),
                    Some(allowed) => {
                        if let Some(denied) = positions.iter().find(|p| !allowed.contains(p)) {
                            ctx.text(error_json("forbidden", &format!("your token does not grant account `{denied}`")));
                            return;
                        }
                        positions
                    }
                };
                // With lanes to recover, nothing is written until the missed fills are read: the
                // client then gets the snapshot, the `recovered` fills, and the stream after them.
                self.set_recovering(!recover.is_empty());
                // The latest subscribe's rate holds for the session's whole market lane; the hub
                // resamples for it.
                let max_rate = self.rates.grant(max_rate);
                self.hub
                    .send(Subscribe { id, instruments, accounts: positions, trades, max_rate })
                    .into_actor(self)
                    .map(move |result, act, ctx| match result {
                        Ok(Ok(subscribed)) if !recover.is_empty() => act.recover(recover, subscribed, ctx),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            act.set_recovering(false);
                            let code = match e {
                                SubscribeError::Unavailable(_) => "unavailable",
                                _ => "bad_subscription",
                            };
                            ctx.text(error_json(code, &e.to_string()));
                        }
                        Err(e) => {
                            act.set_recovering(false);
                            ctx.text(error_json("unavailable", &format!("hub unavailable: {e}")));
                        }
                    })
                    .wait(ctx);
            }
            ClientMessage::Unsubscribe(Names { instruments, positions, trades }) => {
                // "*" means every account the user may see, as in subscribe.
                let positions = match &self.allowed_accounts {
                    Some(allowed) if positions.iter().any(|p| p == "*") => allowed.clone(),
                    _ => positions,
                };
                // Bounded like every hub message: the session waits for the hub (and reads no
                // more of its client meanwhile), so a flood holds up only its own session.
                self.hub
                    .send(Unsubscribe { id, instruments, accounts: positions, trades })
                    .into_actor(self)
                    .map(|result, _, ctx| {
                        if let Err(e) = result {
                            ctx.text(error_json("unavailable", &format!("hub unavailable: {e}")));
                        }
                    })
                    .wait(ctx);
            }
        }
    }

    /// While recovering, the session holds its writes; its outbox must not take that wait for
    /// a slow client's.
    fn set_recovering(&mut self, recovering: bool) {
        self.recovering = recovering;
        self.outbox.hold(recovering, Instant::now());
    }

    /// Reads the fills each lane missed (after the client's seq, up to the snapshot's), and
    /// queues them as one `recovered` message; then the session writes again.
    fn recover(
        &mut self,
        recover: std::collections::BTreeMap<String, u64>,
        subscribed: Subscribed,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let now_seqs: HashMap<String, u64> = subscribed.fill_seqs.into_iter().collect();
        let (fills, max) = (self.fills.clone(), self.max_recover);
        let lanes = async move {
            // The bound holds for the whole answer, not per lane: 200 lanes of 1,000 fills each
            // would make one message of 200,000 fills.
            let (mut lanes, mut left) = (Vec::with_capacity(recover.len()), max);
            for (key, held) in recover {
                let lane = recover_lane(fills.as_ref(), &key, held, now_seqs.get(&key).copied(), (left, max)).await;
                left = left.saturating_sub(lane.fills.len() as u64);
                lanes.push(lane);
            }
            lanes
        };
        lanes
            .into_actor(self)
            .map(|lanes, act, ctx| {
                let text = serde_json::json!({"type": "recovered", "v": 1, "lanes": lanes}).to_string();
                act.recovered = Some(text);
                act.set_recovering(false);
                ctx.notify(Wake);
            })
            .wait(ctx);
    }

    fn drain(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.recovering {
            return;
        }
        let drained = self.outbox.drain(DRAIN_BATCH);
        for text in drained.control {
            ctx.text(text);
        }
        if let Some(recovered) = self.recovered.take() {
            ctx.text(recovered);
        }
        let now = now_micros();
        let mut batch = BatchFrame::default();
        // Counted per lane once per drain, not per frame.
        let (mut account_sent, mut market_sent) = (0u64, 0u64);
        for frame in &drained.updates {
            // Defence in depth: subscriptions are checked already, but no frame of an account
            // the user may not see ever leaves.
            if let Some(allowed) = &self.allowed_accounts
                && let Some(account) = account_of(&frame.key)
                && !allowed.iter().any(|a| a == account)
            {
                tracing::error!(key = %frame.key, "withheld a frame of an account the session may not see");
                continue;
            }
            match frame.lane {
                Lane::Account => account_sent += 1,
                Lane::Market => market_sent += 1,
            }
            // State restored after a restart has no ingest time (0): it measures nothing.
            if frame.ingest_ts > 0 {
                self.metrics.end_to_end_seconds.observe((now - frame.ingest_ts).max(0) as f64 / 1e6);
            }
            crate::metrics::observe_hop(&self.metrics.hop_cached_to_written, frame.cached_ts, now);
            if let Some(parent) = frame.traced_write() {
                crate::trace::hop("ttpulse.ws_write", parent, frame.cached_ts, now, || {
                    vec![
                        KeyValue::new("ttpulse.session", self.id.unwrap_or_default() as i64),
                        KeyValue::new("ttpulse.key", frame.key.clone()),
                    ]
                });
            }
            if !self.batched {
                ctx.text(frame.text.clone());
            } else if let Some(full) = batch.push(&frame.text) {
                ctx.text(full);
            }
        }
        if let Some(last) = batch.finish() {
            ctx.text(last);
        }
        for (lane, sent) in [(Lane::Account, account_sent), (Lane::Market, market_sent)] {
            if sent > 0 {
                self.metrics.updates_sent.with_label_values(&[lane.as_str()]).inc_by(sent);
            }
        }
        if let Some(reason) = drained.close {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Other(reason.code),
                description: Some(reason.reason),
            }));
            ctx.stop();
        } else if drained.more {
            ctx.notify(Wake);
        }
    }
}

impl Actor for SessionActor {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics.ws_connections.inc();
        self.metrics.ws_connections_total.inc();
        self.heartbeat(ctx);
        if let Some(expires_at) = self.expires_at {
            // An expiry beyond what the clock can hold is no expiry to wait for.
            let left = std::time::UNIX_EPOCH
                .checked_add(Duration::from_secs(expires_at))
                .map(|at| at.duration_since(std::time::SystemTime::now()).unwrap_or_default());
            if let Some(left) = left.filter(|left| *left < Duration::from_secs(10 * 365 * 86_400)) {
                ctx.run_later(left, |act, ctx| {
                    tracing::info!(session = ?act.id, "token expired; closing the session");
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Other(TOKEN_EXPIRED),
                        description: Some("token expired: reconnect with a fresh token".into()),
                    }));
                    ctx.stop();
                });
            }
        }
        // Wait for the id before reading client messages: they need it.
        self.hub
            .send(Connect { outbox: self.outbox.clone(), wake: ctx.address().recipient() })
            .into_actor(self)
            .map(|result, act, ctx| match result {
                Ok(id) => act.id = Some(id),
                Err(e) => {
                    tracing::error!(error = %e, "hub unavailable; closing the session");
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Again,
                        description: Some("hub unavailable".into()),
                    }));
                    ctx.stop();
                }
            })
            .wait(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics.ws_connections.dec();
        if let Some(id) = self.id {
            self.hub.do_send(Disconnect { id });
        }
    }
}

impl Handler<Wake> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.drain(ctx);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for SessionActor {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        // Every frame counts against the rate, pings and binary ones too: a flood of any kind
        // costs its own session, not the others.
        let size = match &msg {
            Ok(ws::Message::Text(text)) => Some(text.len()),
            // Pongs too: unasked-for pongs are a flood like any other.
            Ok(ws::Message::Binary(bytes) | ws::Message::Ping(bytes) | ws::Message::Pong(bytes)) => Some(bytes.len()),
            Ok(ws::Message::Continuation(_)) => Some(MAX_FRAME_BYTES),
            _ => None,
        };
        if let Some(size) = size
            && !self.admit_frame(size, ctx)
        {
            return;
        }
        match msg {
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Binary(_)) => {
                ctx.text(error_json("bad_request", "binary frames are not supported; send JSON text"))
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_)) => {
                ctx.text(error_json("bad_request", "fragmented frames are not supported"));
            }
            Ok(ws::Message::Nop) => {}
            Err(e) => {
                tracing::info!(session = ?self.id, error = %e, "WebSocket protocol error; closing");
                let code = match e {
                    ws::ProtocolError::Overflow => ws::CloseCode::Size,
                    _ => ws::CloseCode::Protocol,
                };
                ctx.close(Some(ws::CloseReason { code, description: Some(e.to_string()) }));
                ctx.stop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_batch_frame_holds_updates_as_they_are_in_order_and_splits_when_full() {
        let mut batch = BatchFrame::default();
        assert_eq!(batch.finish(), None, "no updates, no frame");
        let (a, b) = (r#"{"type":"update","seq":1}"#, r#"{"type":"update","seq":2}"#);
        assert_eq!(batch.push(a), None);
        assert_eq!(batch.push(b), None);
        let text = batch.finish().expect("a frame");
        let frame: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            frame,
            serde_json::json!({"type": "batch", "v": 2, "updates": [{"type": "update", "seq": 1}, {"type": "update", "seq": 2}]})
        );
        assert_eq!(batch.finish(), None, "finish starts a new frame");

        // Past BATCH_MAX_BYTES the full frame comes back and the update starts the next one;
        // an update larger than the limit still goes, alone.
        let big = format!(r#"{{"type":"update","pad":"{}"}}"#, "x".repeat(BATCH_MAX_BYTES));
        assert_eq!(batch.push(a), None);
        let full = batch.push(&big).expect("the frame before the big update");
        let full: serde_json::Value = serde_json::from_str(&full).expect("JSON");
        assert_eq!(full["updates"].as_array().map(Vec::len), Some(1));
        let alone: serde_json::Value =
            serde_json::from_str(&batch.push(b).expect("the big update's frame")).expect("JSON");
        assert_eq!(alone["updates"][0]["pad"].as_str().map(str::len), Some(BATCH_MAX_BYTES));
        let last: serde_json::Value = serde_json::from_str(&batch.finish().expect("the last")).expect("JSON");
        assert_eq!(last["updates"], serde_json::json!([{"type": "update", "seq": 2}]));
    }

    #[test]
    fn a_batch_frame_of_updates_that_fit_is_never_larger_than_the_limit() {
        // 64 KiB is also the largest frame awc and actix-web-actors read by default: a batch
        // one byte over it ends such a version 2 client's session (an overflow), and only when
        // the updates of a wake happen to fill a frame to within a few bytes.
        for size in 40..400 {
            let update = format!(r#"{{"type":"update","pad":"{}"}}"#, "x".repeat(size));
            let mut batch = BatchFrame::default();
            let mut frames: Vec<String> = (0..600).filter_map(|_| batch.push(&update)).collect();
            frames.extend(batch.finish());
            for frame in &frames {
                assert!(
                    frame.len() <= BATCH_MAX_BYTES,
                    "a frame of {} bytes for updates of {}",
                    frame.len(),
                    update.len()
                );
            }
            let updates: usize = frames
                .iter()
                .map(|f| {
                    serde_json::from_str::<serde_json::Value>(f).expect("JSON")["updates"]
                        .as_array()
                        .map_or(0, Vec::len)
                })
                .sum();
            assert_eq!(updates, 600);
        }
    }

    #[test]
    fn client_messages() {
        assert!(matches!(parse_client_message(r#"{"op":"ping"}"#), Ok(ClientMessage::Ping)));
        let Ok(ClientMessage::Subscribe { instruments, positions, .. }) =
            parse_client_message(r#"{"op":"subscribe","instruments":["ESZ6"]}"#)
        else {
            panic!("a subscribe")
        };
        assert_eq!((instruments, positions), (vec!["ESZ6".to_owned()], vec![]));
        let error = parse_client_message(r#"{"op":"dance"}"#).err().unwrap_or_default();
        assert!(error.contains("unknown variant `dance`"), "{error}");
    }

    /// A message may also be a JSON array, the op first and the fields in order (as serde has
    /// always read it): a subscribe as well as an unsubscribe.
    #[test]
    fn client_messages_in_the_array_form() {
        let Ok(ClientMessage::Subscribe { instruments, positions, trades, recover, max_rate }) =
            parse_client_message(r#"["subscribe",["ESZ6"],["ACC1"],[],{"fills:ACC1:ESZ6":3},5]"#)
        else {
            panic!("a subscribe")
        };
        assert_eq!((instruments, positions, trades), (vec!["ESZ6".to_owned()], vec!["ACC1".to_owned()], vec![]));
        assert_eq!((recover.get("fills:ACC1:ESZ6"), max_rate), (Some(&3), Some(5)));
        assert!(matches!(parse_client_message(r#"["subscribe",["ESZ6"]]"#), Ok(ClientMessage::Subscribe { .. })));
        let Ok(ClientMessage::Unsubscribe(names)) = parse_client_message(r#"["unsubscribe",["ESZ6"]]"#) else {
            panic!("an unsubscribe")
        };
        assert_eq!(names.instruments, vec!["ESZ6".to_owned()]);
    }

    /// The largest subscribe a dashboard can send (200 names of 32 characters, 200 recover lanes
    /// of 64-character accounts at u64::MAX) fits in a frame, and a dashboard that connects with
    /// it and then changes its list a few times in a row (the frontend's `follow`: unsubscribe,
    /// then the whole subscribe, without `recover`) is never refused by the byte budget.
    #[test]
    fn attack_a_dashboards_largest_subscribes_fit_the_frame_and_the_byte_burst() {
        let symbols: Vec<String> = (0..200).map(|i| format!("{i:0>32}")).collect();
        let recover: std::collections::BTreeMap<String, u64> =
            symbols.iter().map(|s| (format!("fills:{}:{s}", "a".repeat(64)), u64::MAX)).collect();
        let subscribe = serde_json::json!({"op": "subscribe", "instruments": symbols, "recover": recover}).to_string();
        assert!(subscribe.len() < MAX_FRAME_BYTES, "{} bytes", subscribe.len());
        assert!(matches!(parse_client_message(&subscribe), Ok(ClientMessage::Subscribe { .. })));
        let unsubscribe = serde_json::json!({"op": "unsubscribe", "instruments": symbols[..100]}).to_string();
        let change = serde_json::json!({"op": "subscribe", "instruments": symbols}).to_string();
        let mut budget = MessageBudget::new(20);
        assert!(matches!(budget.admit(subscribe.len()), Admission::Admit), "the first subscribe refused");
        for change_no in 0..3 {
            for (name, text) in [("unsubscribe", &unsubscribe), ("subscribe", &change)] {
                assert!(matches!(budget.admit(text.len()), Admission::Admit), "change {change_no}: {name} refused");
            }
        }
    }

    proptest! {
        // Fuzzing the parser: any text (and JSON-looking text) gives a message or an error
        // sentence, never a panic.
        #[test]
        fn any_text_is_a_message_or_an_error(text in ".{0,300}") {
            let _ = parse_client_message(&text);
        }

        #[test]
        fn json_shaped_text_is_a_message_or_an_error(
            op in prop::sample::select(vec!["subscribe", "unsubscribe", "ping", "", "SUBSCRIBE", "x"]),
            field in prop::sample::select(vec!["instruments", "positions", "op", "\\u0000"]),
            value in prop::sample::select(vec!["[]", "[\"*\"]", "[1,2]", "null", "{}", "\"ESZ6\"", "[\"a\",null]"]),
        ) {
            let text = format!(r#"{{"op":"{op}","{field}":{value}}}"#);
            match parse_client_message(&text) {
                Ok(_) => {}
                Err(reason) => prop_assert!(reason.starts_with("cannot read the message")),
            }
        }
    }
}
