//! Raw events as they enter the system, their wire format and their validation.
//!
//! Wire format (JSON, the same over HTTP ingest, replay files and Kafka `tt_raw_data`): an object
//! tagged by `"type"`, e.g.
//! `{"type":"trade","instrument":"ESZ6","price":"6850.25","qty":3,"aggressor":"buy"}`.
//! `event_id` (`<source>:<sequence>`) and `ts` (exchange time, Unix micros) are optional on ingest
//! and assigned when absent; `ingest_ts` is set by the system when the event enters it (an
//! ingester overwrites any value a client sends; a processor keeps the ingester's stamp).

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Micros;
use super::ids::{ACCOUNT_RULE, Account, MAX_EVENT_SEQ, client_may_use, is_valid_order_id};
use super::instruments::{InstrumentCatalog, on_tick};
use super::trace_context::TraceContext;

/// Latest exchange time any event may carry (the start of the year 3000, in Unix micros):
/// far beyond any real feed, and far from where time arithmetic could overflow.
pub const MAX_TS: Micros = 32_503_680_000_000_000;

/// How far an event pushed by a client may be dated from the time it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// At most this far ahead of the ingest time (clocks differ a little; the future does not
    /// trade).
    pub ahead: Micros,
    /// At most this far behind it.
    pub behind: Micros,
}

impl Default for TimeWindow {
    /// Five seconds ahead, one day behind: what suits a live feed.
    fn default() -> Self {
        Self { ahead: 5_000_000, behind: 86_400_000_000 }
    }
}

impl TimeWindow {
    pub fn check(&self, ts: Micros, now: Micros) -> Result<(), ValidationError> {
        if ts > now.saturating_add(self.ahead) {
            return Err(ValidationError::new(
                "ts",
                format!("{ts} is more than {} ms ahead of the ingest time {now}", self.ahead / 1_000),
            ));
        }
        if ts < now.saturating_sub(self.behind) {
            return Err(ValidationError::new(
                "ts",
                format!("{ts} is more than {} s behind the ingest time {now}", self.behind / 1_000_000),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// +1 for buy, -1 for sell: the sign a fill of this side gives to a position.
    pub fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub instrument: String,
    pub bid: Decimal,
    pub bid_qty: i64,
    pub ask: Decimal,
    pub ask_qty: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    pub instrument: String,
    pub price: Decimal,
    pub qty: i64,
    pub aggressor: Side,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    pub account: String,
    pub order_id: String,
    pub fill_id: String,
    pub instrument: String,
    pub side: Side,
    pub price: Decimal,
    pub qty: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EventBody {
    Quote(Quote),
    Trade(Trade),
    Fill(Fill),
}

impl EventBody {
    pub fn instrument(&self) -> &str {
        match self {
            EventBody::Quote(q) => &q.instrument,
            EventBody::Trade(t) => &t.instrument,
            EventBody::Fill(f) => &f.instrument,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Quote(_) => "quote",
            EventBody::Trade(_) => "trade",
            EventBody::Fill(_) => "fill",
        }
    }
}

/// An event as received: ids and timestamps may still be missing. Decode it with
/// [`RawEvent::decode`] (or [`RawEvent::from_value`]), which names the field at fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_ts: Option<Micros>,
    #[serde(flatten)]
    pub body: EventBody,
}

/// The stable identity of an event: which source produced it and its sequence there.
/// Sequences of one source grow per instrument, which is what makes deduplication exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    pub source: String,
    pub seq: u64,
}

impl EventId {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::new("event_id", format!("`{text}` is not `<source>:<sequence>`"));
        let (source, seq) = text.rsplit_once(':').ok_or_else(bad)?;
        let valid_source = !source.is_empty()
            && source.len() <= 64
            && source.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !valid_source {
            return Err(bad());
        }
        let seq = seq.parse::<u64>().map_err(|_| bad())?;
        if seq > MAX_EVENT_SEQ {
            return Err(ValidationError::new(
                "event_id",
                format!("sequence {seq} is above {MAX_EVENT_SEQ}, more than a real feed produces"),
            ));
        }
        Ok(Self { source: source.to_owned(), seq })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.seq)
    }
}

/// An event that passed validation, with its id and both timestamps set.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub id: EventId,
    /// Exchange time.
    pub ts: Micros,
    /// When the event entered ttpulse; end-to-end latency is measured from here.
    pub ingest_ts: Micros,
    pub body: EventBody,
    /// The trace it belongs to, when sampled (carried beside the event, never in its body).
    pub trace: Option<TraceContext>,
}

impl ValidEvent {
    /// The rules for an event a client pushed, beyond [`RawEvent::validate`]: its exchange time
    /// lies within `window` of `now`, and an id the client supplied (`supplied_id`) uses no
    /// source that ttpulse assigns itself (except an `api` id ttpulse handed out, resent after
    /// a timeout).
    pub fn check_pushed(&self, now: Micros, window: &TimeWindow, supplied_id: bool) -> Result<(), ValidationError> {
        window.check(self.ts, now)?;
        self.check_source(now, supplied_id)
    }

    /// The rules for a line of a replay file: it keeps its own (past) clock, so only the future
    /// is refused (a line dated ahead of `now` by more than the window froze the candles), and
    /// an id it carries uses no source that ttpulse assigns itself.
    pub fn check_replayed(&self, now: Micros, window: &TimeWindow, supplied_id: bool) -> Result<(), ValidationError> {
        if self.ts > now.saturating_add(window.ahead) {
            return Err(ValidationError::new(
                "ts",
                format!("{} is in the future (replay time {now}); a recorded event cannot be", self.ts),
            ));
        }
        self.check_source(now, supplied_id)
    }

    fn check_source(&self, now: Micros, supplied_id: bool) -> Result<(), ValidationError> {
        if supplied_id && !client_may_use(&self.id.source, self.id.seq, now) {
            return Err(ValidationError::new(
                "event_id",
                format!(
                    "source `{}` is assigned by ttpulse itself (`api` ids only as a resend of one it handed out); \
                     name your feed's own source",
                    self.id.source
                ),
            ));
        }
        Ok(())
    }

    pub fn to_raw(&self) -> RawEvent {
        RawEvent {
            event_id: Some(self.id.to_string()),
            ts: Some(self.ts),
            ingest_ts: Some(self.ingest_ts),
            body: self.body.clone(),
        }
    }
}

/// Why an event was refused: the field at fault and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// Hands out `<source>:<sequence>` ids for events that arrive without one. Sequences are the
/// ingest time in micros, bumped to stay strictly increasing, so a restarted source never
/// reuses an id that an earlier run already handed out (as long as the clock does not go back).
#[derive(Debug, Clone)]
pub struct EventIdAllocator {
    source: String,
    last: u64,
}

impl EventIdAllocator {
    pub fn new(source: impl Into<String>) -> Self {
        Self { source: source.into(), last: 0 }
    }

    pub fn next(&mut self, now: Micros) -> EventId {
        let candidate = u64::try_from(now).unwrap_or(0);
        self.last = candidate.max(self.last.saturating_add(1));
        EventId { source: self.source.clone(), seq: self.last }
    }
}

/// The envelope fields of a raw event, decoded apart from its body.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    ts: Option<Micros>,
    #[serde(default)]
    ingest_ts: Option<Micros>,
}

/// Every field an event of any type may carry, each optional: the one-pass shape that
/// [`RawEvent::decode`] tries first, without building a JSON tree. It takes a JSON object
/// whose every key is one of these, once, with a value of the field's type (all that ttpulse
/// writes itself); anything else goes the tree path, which validates the whole text (an unknown
/// field's value too) and names the field at fault.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnyEvent {
    /// A string, as the tree path requires (an enum here would also take `{"quote":null}`).
    #[serde(rename = "type")]
    kind: String,
    event_id: Option<String>,
    ts: Option<Micros>,
    ingest_ts: Option<Micros>,
    instrument: Option<String>,
    bid: Option<Decimal>,
    bid_qty: Option<i64>,
    ask: Option<Decimal>,
    ask_qty: Option<i64>,
    price: Option<Decimal>,
    qty: Option<i64>,
    aggressor: Option<Side>,
    side: Option<Side>,
    account: Option<String>,
    order_id: Option<String>,
    fill_id: Option<String>,
}

impl AnyEvent {
    /// The event, if every field its type needs is there (`None`: the tree path says which is not).
    fn into_raw(self) -> Option<RawEvent> {
        let body = match self.kind.as_str() {
            "quote" => EventBody::Quote(Quote {
                instrument: self.instrument?,
                bid: self.bid?,
                bid_qty: self.bid_qty?,
                ask: self.ask?,
                ask_qty: self.ask_qty?,
            }),
            "trade" => EventBody::Trade(Trade {
                instrument: self.instrument?,
                price: self.price?,
                qty: self.qty?,
                aggressor: self.aggressor?,
            }),
            "fill" => EventBody::Fill(Fill {
                account: self.account?,
                order_id: self.order_id?,
                fill_id: self.fill_id?,
                instrument: self.instrument?,
                side: self.side?,
                price: self.price?,
                qty: self.qty?,
            }),
            _ => return None,
        };
        Some(RawEvent { event_id: self.event_id, ts: self.ts, ingest_ts: self.ingest_ts, body })
    }
}

impl RawEvent {
    /// Decodes one event from JSON text.
    pub fn decode(json: &[u8]) -> Result<Self, ValidationError> {
        // One pass when the event is well-formed (a quarter of the JSON tree's cost, BENCHMARKS.md);
        // the tree path for anything else, to say what is wrong and to ignore what a type does
        // not use. Only an object: serde would also read a struct from an array.
        let object = json.iter().find(|b| !b" \t\n\r".contains(b)) == Some(&b'{');
        if object && let Some(raw) = serde_json::from_slice::<AnyEvent>(json).ok().and_then(AnyEvent::into_raw) {
            return Ok(raw);
        }
        Self::decode_tree(json)
    }

    /// Decodes through a JSON tree: validates the whole text, ignores the fields the event's
    /// type does not use, and names the field at fault. [`RawEvent::decode`] gives the same
    /// answer, faster; this path is public for comparing the two.
    pub fn decode_tree(json: &[u8]) -> Result<Self, ValidationError> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| ValidationError::new("json", format!("malformed JSON: {e}")))?;
        Self::from_value(value)
    }

    /// Decodes one event from a parsed JSON value. Unknown fields are ignored.
    pub fn from_value(value: serde_json::Value) -> Result<Self, ValidationError> {
        fn field<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, ValidationError> {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                let reason = e.into_inner().to_string();
                // A missing field is reported at its parent: name the field itself.
                let missing = reason.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
                let field = match (missing, path.as_str()) {
                    (Some(name), ".") => name.to_owned(),
                    (Some(name), parent) => format!("{parent}.{name}"),
                    (None, ".") => "event".to_owned(),
                    (None, path) => path.to_owned(),
                };
                ValidationError::new(field, reason)
            })
        }
        if !value.is_object() {
            return Err(ValidationError::new("event", "must be a JSON object"));
        }
        let kind = match value.get("type") {
            Some(serde_json::Value::String(kind)) => kind.as_str(),
            Some(_) => return Err(ValidationError::new("type", "must be a string")),
            None => return Err(ValidationError::new("type", "missing; one of `quote`, `trade`, `fill`")),
        };
        let body = match kind {
            "quote" => EventBody::Quote(field(&value)?),
            "trade" => EventBody::Trade(field(&value)?),
            "fill" => EventBody::Fill(field(&value)?),
            other => {
                return Err(ValidationError::new(
                    "type",
                    format!("unknown event type `{other}`; one of `quote`, `trade`, `fill`"),
                ));
            }
        };
        let envelope: Envelope = field(&value)?;
        Ok(Self { event_id: envelope.event_id, ts: envelope.ts, ingest_ts: envelope.ingest_ts, body })
    }

    /// The same event entering the system afresh: any `ingest_ts` it carries is dropped, so
    /// the ingester stamps its own.
    pub fn entering(mut self) -> Self {
        self.ingest_ts = None;
        self
    }

    /// Checks the event against the catalog and fills in what is missing (`ts` and `ingest_ts`
    /// default to `now`). `allocate` is called only when the event has no `event_id`.
    pub fn validate(
        self,
        catalog: &InstrumentCatalog,
        now: Micros,
        allocate: &mut dyn FnMut() -> EventId,
    ) -> Result<ValidEvent, ValidationError> {
        let spec = catalog.get(self.body.instrument()).ok_or_else(|| {
            ValidationError::new("instrument", format!("unknown instrument `{}`", self.body.instrument()))
        })?;
        let price_ok = |field: &str, price: Decimal| -> Result<(), ValidationError> {
            if price <= Decimal::ZERO {
                return Err(ValidationError::new(field, format!("must be positive, got {price}")));
            }
            if price > spec.max_price {
                return Err(ValidationError::new(
                    field,
                    format!("{price} is above the price band of {} (at most {})", spec.symbol, spec.max_price),
                ));
            }
            if !on_tick(price, spec.tick_size) {
                return Err(ValidationError::new(
                    field,
                    format!("{price} is not a multiple of the tick size {} of {}", spec.tick_size, spec.symbol),
                ));
            }
            Ok(())
        };
        let qty_in_limit = |field: &str, qty: i64| -> Result<(), ValidationError> {
            if qty > spec.max_qty {
                return Err(ValidationError::new(
                    field,
                    format!("{qty} contracts is more than {} allows in one event ({})", spec.symbol, spec.max_qty),
                ));
            }
            Ok(())
        };
        let qty_positive = |field: &str, qty: i64| -> Result<(), ValidationError> {
            if qty <= 0 {
                return Err(ValidationError::new(field, format!("must be a positive number of contracts, got {qty}")));
            }
            qty_in_limit(field, qty)
        };
        match &self.body {
            EventBody::Quote(q) => {
                price_ok("bid", q.bid)?;
                price_ok("ask", q.ask)?;
                if q.bid > q.ask {
                    return Err(ValidationError::new(
                        "bid",
                        format!("crossed quote: bid {} above ask {}", q.bid, q.ask),
                    ));
                }
                for (field, qty) in [("bid_qty", q.bid_qty), ("ask_qty", q.ask_qty)] {
                    if qty < 0 {
                        return Err(ValidationError::new(field, format!("must not be negative, got {qty}")));
                    }
                    qty_in_limit(field, qty)?;
                }
            }
            EventBody::Trade(t) => {
                price_ok("price", t.price)?;
                qty_positive("qty", t.qty)?;
            }
            EventBody::Fill(f) => {
                price_ok("price", f.price)?;
                qty_positive("qty", f.qty)?;
                if Account::parse(&f.account).is_err() {
                    return Err(ValidationError::new("account", format!("must be {ACCOUNT_RULE}")));
                }
                for (field, value) in [("order_id", &f.order_id), ("fill_id", &f.fill_id)] {
                    if !is_valid_order_id(value) {
                        return Err(ValidationError::new(
                            field,
                            "must be 1 to 128 visible ASCII characters (no spaces or control characters)",
                        ));
                    }
                }
            }
        }
        for (field, time) in [("ts", self.ts), ("ingest_ts", self.ingest_ts)] {
            if let Some(time) = time
                && !(0..=MAX_TS).contains(&time)
            {
                return Err(ValidationError::new(
                    field,
                    format!("must be Unix microseconds between 0 and {MAX_TS} (the year 3000), got {time}"),
                ));
            }
        }
        let id = match &self.event_id {
            Some(text) => EventId::parse(text)?,
            None => allocate(),
        };
        let ingest_ts = self.ingest_ts.filter(|&t| t > 0).unwrap_or(now);
        Ok(ValidEvent { id, ts: self.ts.unwrap_or(now), ingest_ts, body: self.body, trace: None })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn catalog() -> InstrumentCatalog {
        InstrumentCatalog::default_futures()
    }

    fn check(json: &str) -> Result<ValidEvent, String> {
        let raw = RawEvent::decode(json.as_bytes()).map_err(|e| e.to_string())?;
        let mut alloc = EventIdAllocator::new("test");
        raw.validate(&catalog(), 1_000, &mut || alloc.next(1_000)).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_decimal_strings_and_numbers() {
        let e = check(r#"{"type":"trade","instrument":"ESZ6","price":"6850.25","qty":3,"aggressor":"buy"}"#).unwrap();
        let e2 = check(r#"{"type":"trade","instrument":"ESZ6","price":6850.25,"qty":3,"aggressor":"buy"}"#).unwrap();
        assert_eq!(e.body, e2.body);
        assert_eq!(e.id, EventId { source: "test".into(), seq: 1_000 });
        assert_eq!(e.ts, 1_000);
        assert_eq!(e.ingest_ts, 1_000);
        // Prices go back out as decimal strings.
        let wire = serde_json::to_value(e.to_raw()).unwrap();
        assert_eq!(wire["price"], "6850.25");
        assert_eq!(wire["type"], "trade");
        assert_eq!(wire["event_id"], "test:1000");
    }

    #[test]
    fn keeps_supplied_ids_and_times() {
        let e = check(
            r#"{"type":"quote","event_id":"feed-a:42","ts":77,"instrument":"CLF7","bid":"61.49","bid_qty":4,"ask":"61.50","ask_qty":0}"#,
        )
        .unwrap();
        assert_eq!(e.id.to_string(), "feed-a:42");
        assert_eq!(e.ts, 77);
    }

    #[test]
    fn refuses_bad_events_with_a_reason() {
        let cases = [
            (r#"{"type":"trade","instrument":"XXX","price":"1","qty":1,"aggressor":"buy"}"#, "unknown instrument"),
            (r#"{"type":"trade","instrument":"ESZ6","price":"6850.25","qty":-1,"aggressor":"buy"}"#, "qty"),
            (r#"{"type":"trade","instrument":"ESZ6","price":"6850.25","qty":0,"aggressor":"buy"}"#, "qty"),
            (r#"{"type":"trade","instrument":"ESZ6","price":"6850.10","qty":1,"aggressor":"buy"}"#, "tick size"),
            (r#"{"type":"trade","instrument":"ESZ6","price":"-1","qty":1,"aggressor":"buy"}"#, "positive"),
            (r#"{"type":"trade","instrument":"ESZ6","qty":1,"aggressor":"buy"}"#, "missing field `price`"),
            (r#"{"instrument":"ESZ6"}"#, "type: missing"),
            (r#"[1]"#, "JSON object"),
            (r#"{"type":"trade""#, "malformed JSON"),
            (
                r#"{"type":"trade","instrument":"ESZ6","price":"1","qty":1,"aggressor":"up"}"#,
                "aggressor: unknown variant",
            ),
            (r#"{"type":"order","instrument":"ESZ6"}"#, "unknown event type `order`"),
            (r#"{"type":"quote","instrument":"ESZ6","bid":"6851","bid_qty":1,"ask":"6850","ask_qty":1}"#, "crossed"),
            (r#"{"type":"quote","instrument":"ESZ6","bid":"6850","bid_qty":-1,"ask":"6851","ask_qty":1}"#, "bid_qty"),
            (
                r#"{"type":"fill","account":"","order_id":"o","fill_id":"f","instrument":"ESZ6","side":"buy","price":"6850","qty":1}"#,
                "account",
            ),
            (
                r#"{"type":"trade","event_id":"nocolon","instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}"#,
                "event_id",
            ),
            (
                r#"{"type":"trade","event_id":"a:b","instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}"#,
                "event_id",
            ),
            (r#"{"type":"trade","ts":-5,"instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}"#, "ts"),
            (r#"{"type":"trade","instrument":"ESZ6","price":"abc","qty":1,"aggressor":"buy"}"#, "price: invalid value"),
            (r#"{"type":"trade","instrument":"ESZ6","price":"1","qty":1.5,"aggressor":"buy"}"#, "qty: invalid type"),
            // The top of Decimal's range: once accepted, its mid overflowed and stopped the processor.
            (
                r#"{"type":"quote","instrument":"ESZ6","bid":"79228162514264337593543950335","bid_qty":1,"ask":"79228162514264337593543950335","ask_qty":1}"#,
                "bid: 79228162514264337593543950335 is above the price band of ESZ6 (at most 68500",
            ),
            (r#"{"type":"trade","instrument":"ESZ6","price":"68500.25","qty":1,"aggressor":"buy"}"#, "price band"),
            (
                r#"{"type":"trade","instrument":"ESZ6","price":"6850","qty":9223372036854775807,"aggressor":"buy"}"#,
                "qty: 9223372036854775807 contracts is more than ESZ6 allows in one event (100000)",
            ),
            (
                r#"{"type":"quote","instrument":"ESZ6","bid":"6850","bid_qty":100001,"ask":"6851","ask_qty":1}"#,
                "bid_qty",
            ),
            (
                r#"{"type":"fill","account":"<img src=x onerror=alert(1)>","order_id":"o","fill_id":"f","instrument":"ESZ6","side":"buy","price":"6850","qty":1}"#,
                "account: must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
            ),
            (
                r#"{"type":"fill","account":"A","order_id":"o\u0000","fill_id":"f","instrument":"ESZ6","side":"buy","price":"6850","qty":1}"#,
                "order_id: must be 1 to 128 visible ASCII",
            ),
            (
                r#"{"type":"fill","account":"A","order_id":"o","fill_id":"f g","instrument":"ESZ6","side":"buy","price":"6850","qty":1}"#,
                "fill_id",
            ),
            (
                r#"{"type":"trade","event_id":"api:18446744073709551615","instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}"#,
                "event_id: sequence 18446744073709551615 is above 9007199254740991",
            ),
            (
                r#"{"type":"trade","ts":9223372036854775807,"instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}"#,
                "ts: must be Unix microseconds between 0 and",
            ),
            (
                r#"{"type":"trade","ingest_ts":-1,"instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}"#,
                "ingest_ts",
            ),
        ];
        for (json, expected) in cases {
            let err = check(json).expect_err(json);
            assert!(err.contains(expected), "{json}: `{err}` should mention `{expected}`");
        }
    }

    #[test]
    fn pushed_events_keep_to_the_time_window_and_their_own_sources() {
        let now = 1_000_000_000_000;
        let window = TimeWindow::default();
        let pushed = |id: &str, ts: Micros| {
            let json = format!(
                r#"{{"type":"trade","event_id":"{id}","ts":{ts},"instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}}"#
            );
            let event = RawEvent::decode(json.as_bytes())
                .and_then(|r| r.validate(&catalog(), now, &mut || unreachable!()))
                .map_err(|e| e.to_string())?;
            event.check_pushed(now, &window, true).map_err(|e| e.to_string())
        };
        assert_eq!(pushed("feed-x:1", now), Ok(()));
        assert_eq!(pushed("feed-x:1", now + 5_000_000), Ok(()), "the edge of the window is inside");
        assert_eq!(pushed("feed-x:1", now - 86_400_000_000), Ok(()));
        let err = pushed("feed-x:1", now + 5_000_001).unwrap_err();
        assert!(err.starts_with("ts: ") && err.contains("ahead"), "{err}");
        // A trade dated 2100 once moved every candle there for good.
        let err = pushed("feed-x:1", 4_102_444_800_000_000).unwrap_err();
        assert!(err.contains("ahead"), "{err}");
        let err = pushed("feed-x:1", now - 86_400_000_001).unwrap_err();
        assert!(err.starts_with("ts: ") && err.contains("behind"), "{err}");
        for reserved in ["sim:5", "replay-day1.jsonl:3", "kafka-p0:9", "api:1000000000001"] {
            let err = pushed(reserved, now).unwrap_err();
            assert!(err.starts_with("event_id: source"), "{reserved}: {err}");
        }
        assert_eq!(pushed("api:999999999999", now), Ok(()), "a resend of an id ttpulse handed out");
    }

    #[test]
    fn an_ingester_restamps_and_a_processor_keeps_the_ingest_time() {
        let json = r#"{"type":"trade","ingest_ts":42,"instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}"#;
        let mut alloc = EventIdAllocator::new("t");
        let catalog = catalog();
        let kept =
            RawEvent::decode(json.as_bytes()).unwrap().validate(&catalog, 1_000, &mut || alloc.next(1_000)).unwrap();
        assert_eq!(kept.ingest_ts, 42);
        let fresh = RawEvent::decode(json.as_bytes())
            .unwrap()
            .entering()
            .validate(&catalog, 1_000, &mut || alloc.next(1_000))
            .unwrap();
        assert_eq!(fresh.ingest_ts, 1_000);
    }

    #[test]
    fn allocated_ids_strictly_increase() {
        let mut alloc = EventIdAllocator::new("sim");
        let a = alloc.next(500);
        let b = alloc.next(500);
        let c = alloc.next(100);
        let d = alloc.next(900);
        assert_eq!([a.seq, b.seq, c.seq, d.seq], [500, 501, 502, 900]);
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        /// Every field of every event type and of the envelope.
        const NAMES: [&str; 15] = [
            "event_id",
            "ts",
            "ingest_ts",
            "instrument",
            "bid",
            "bid_qty",
            "ask",
            "ask_qty",
            "price",
            "qty",
            "aggressor",
            "side",
            "account",
            "order_id",
            "fill_id",
        ];

        /// A value of the type the field `name` has.
        fn typed_value(name: &str, ticks: i64, number: i64) -> serde_json::Value {
            match name {
                "ts" | "ingest_ts" | "bid_qty" | "ask_qty" | "qty" => number.into(),
                "bid" | "ask" | "price" => (Decimal::from(ticks) * Decimal::new(25, 2)).to_string().into(),
                "aggressor" | "side" => if number % 2 == 0 { "buy" } else { "sell" }.into(),
                _ => format!("ES{}", number % 100).into(),
            }
        }

        fn field_value() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
                "[0-9.eE+-]{0,30}".prop_map(serde_json::Value::from),
                ".{0,40}".prop_map(serde_json::Value::from),
                Just(serde_json::json!([])),
                Just(serde_json::json!({})),
            ]
        }

        proptest! {
            // Fuzzing the decoder: arbitrary bytes never panic, and a refusal always names a field.
            #[test]
            fn any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                if let Err(e) = RawEvent::decode(&bytes) {
                    prop_assert!(!e.field.is_empty() && !e.reason.is_empty());
                }
            }

            // Events with every field replaced by arbitrary values: decoded and validated, or
            // refused with a reason; never a panic, never an invalid event accepted.
            #[test]
            fn events_with_arbitrary_fields_are_checked(
                kind in prop::sample::select(vec!["quote", "trade", "fill"]),
                values in prop::collection::vec(field_value(), 12),
            ) {
                let names = ["instrument", "bid", "bid_qty", "ask", "ask_qty", "price", "qty", "aggressor",
                             "side", "account", "fill_id", "event_id"];
                let mut object = serde_json::json!({"type": kind, "order_id": "o"});
                for (name, value) in names.iter().zip(values) {
                    object[*name] = value;
                }
                let catalog = InstrumentCatalog::default_futures();
                let mut alloc = EventIdAllocator::new("fuzz");
                if let Ok(raw) = RawEvent::from_value(object)
                    && let Ok(event) = raw.validate(&catalog, 1, &mut || alloc.next(1))
                {
                    let spec = catalog.get(event.body.instrument()).expect("validated instruments exist");
                    let prices: Vec<Decimal> = match &event.body {
                        EventBody::Quote(q) => vec![q.bid, q.ask],
                        EventBody::Trade(t) => vec![t.price],
                        EventBody::Fill(f) => vec![f.price],
                    };
                    prop_assert!(prices.iter().all(|p| *p > Decimal::ZERO && on_tick(*p, spec.tick_size)));
                }
            }

            // The one-pass decoder gives what the JSON-tree decoder gives, event or refusal:
            // mostly well-typed values in the fields of every type, some of them missing, some
            // arbitrary, and unknown types.
            #[test]
            fn the_one_pass_decoder_agrees_with_the_tree_decoder(
                kind in prop::sample::select(vec!["quote", "trade", "fill", "Quote", "order", ""]),
                values in prop::collection::vec(prop::option::weighted(0.9, any::<u8>()), NAMES.len()),
                arbitrary in prop::collection::vec(field_value(), NAMES.len()),
                ticks in 1i64..1_000_000,
                number in any::<i64>(),
                venue in prop::option::weighted(0.25, field_value()),
            ) {
                let mut object = serde_json::json!({"type": kind});
                for ((name, choice), other) in NAMES.iter().zip(values).zip(arbitrary) {
                    let Some(choice) = choice else { continue };
                    // Fifteen in sixteen well-typed for the field (so that one in ten objects or
                    // so is a whole event), else an arbitrary value.
                    object[*name] = if choice % 16 == 0 { other } else { typed_value(name, ticks, number) };
                }
                if let Some(venue) = venue {
                    object["venue"] = venue;
                }
                // The same bytes both ways (a float read back from text may differ in its last
                // bit from the one the object held).
                let bytes = serde_json::to_vec(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(RawEvent::decode(&bytes), RawEvent::decode_tree(&bytes));
            }

            // Valid events survive the wire: to JSON and back, equal.
            #[test]
            fn valid_events_round_trip(ticks in 1i64..100_000, qty in 1i64..10_000, buy in any::<bool>()) {
                let catalog = InstrumentCatalog::default_futures();
                let price = Decimal::from(ticks) * Decimal::new(25, 2);
                let side = if buy { "buy" } else { "sell" };
                let json = serde_json::json!({"type": "trade", "event_id": "p:1", "instrument": "ESZ6",
                    "price": price.to_string(), "qty": qty, "aggressor": side});
                let event = RawEvent::from_value(json).and_then(|r| r.validate(&catalog, 1, &mut || unreachable!()));
                let event = event.map_err(|e| TestCaseError::fail(e.to_string()))?;
                let wire = serde_json::to_vec(&event.to_raw()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let again = RawEvent::decode(&wire).and_then(|r| r.validate(&catalog, 2, &mut || unreachable!()));
                prop_assert_eq!(again.map_err(|e| TestCaseError::fail(e.to_string()))?, event);
            }
        }
    }

    #[test]
    fn a_repeated_key_decodes_as_the_json_tree_reads_it_the_last_one_wins() {
        let json = br#"{"type":"trade","instrument":"ESZ6","price":"6850.25","qty":1,"qty":2,"aggressor":"buy"}"#;
        let raw = RawEvent::decode(json).expect("decoded");
        let EventBody::Trade(trade) = &raw.body else { panic!("a trade") };
        assert_eq!(trade.qty, 2);
        assert_eq!(Ok(raw), RawEvent::decode_tree(json));
    }

    /// Inputs a one-pass struct decoder would take and the tree path refuses: decoded the same
    /// way by both (found by a review).
    #[test]
    fn what_the_tree_path_refuses_is_refused_by_decode_too() {
        let quote = r#""instrument":"ESZ6","bid":"1","bid_qty":1,"ask":"2","ask_qty":1"#;
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<Vec<u8>> = vec![
            // A struct read from an array.
            br#"["quote",null,null,null,"ESZ6","1",1,"2",1,null,null,null,null,null,null,null]"#.to_vec(),
            // The type as an enum's map form.
            format!(r#"{{"type":{{"quote":null}},{quote}}}"#).into_bytes(),
            // Unknown fields whose values a skipping parser does not check.
            format!(r#"{{"type":"quote",{quote},"venue":"\ud800"}}"#).into_bytes(),
            format!(r#"{{"type":"quote",{quote},"venue":1e400}}"#).into_bytes(),
            format!(r#"{{"type":"quote",{quote},"venue":{deep}}}"#).into_bytes(),
            [format!(r#"{{"type":"quote",{quote},"venue":""#).as_bytes(), b"\xff\xfe", br#""}"#].concat(),
        ];
        for json in cases {
            let decoded = RawEvent::decode(&json);
            assert!(decoded.is_err(), "{} was taken: {decoded:?}", String::from_utf8_lossy(&json));
            assert_eq!(decoded, RawEvent::decode_tree(&json));
        }
        // And the same quote, well-formed, is taken by both.
        let json = format!(r#"{{"type":"quote",{quote}}}"#);
        assert!(RawEvent::decode(json.as_bytes()).is_ok());
    }

    #[test]
    fn a_field_of_another_type_is_ignored_whatever_it_holds() {
        // `side` is a fill's: a quote that carries a bad one is still a quote (the one-pass
        // decoder refuses it, the tree path takes it).
        let json = br#"{"type":"quote","instrument":"ESZ6","bid":"1","bid_qty":1,"ask":"2","ask_qty":1,"side":7}"#;
        assert!(matches!(RawEvent::decode(json).expect("decoded").body, EventBody::Quote(_)));
    }

    #[test]
    fn event_id_round_trip() {
        let id = EventId::parse("replay/day1.jsonl:17").unwrap();
        assert_eq!(id.source, "replay/day1.jsonl");
        assert_eq!(id.seq, 17);
        assert_eq!(id.to_string(), "replay/day1.jsonl:17");
    }
}
