//! Processed updates: what the processor publishes and what sessions receive.
//!
//! On the wire (WebSocket, Kafka `tt_processed_data`, Redis Pub/Sub `tt_updates`) an update is
//! `{"type":"update","v":1,"kind":"instrument","key":"inst:ESZ6","seq":42,"ingest_ts":...,"data":{...}}`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Micros;
use super::candles::Candle;
use super::events::Side;
use super::keys::Key;
use super::market::InstrumentState;
use super::pnl::PnlPoint;
use super::positions::PositionState;
use super::trace_context::{self, TraceContext};

/// Schema version of the update wire format.
pub const WIRE_VERSION: u32 = 1;

/// A fill as reported on an account's must-deliver lane, with the position it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillReport {
    pub account: String,
    /// Grows by one with every fill of this account in this instrument: a gap means a lost
    /// fill. (Per instrument, since raw events are partitioned by instrument.)
    pub seq: u64,
    pub fill_id: String,
    pub order_id: String,
    pub symbol: String,
    pub side: Side,
    pub price: Decimal,
    pub qty: i64,
    pub ts: Micros,
    pub position: PositionState,
}

/// A print (time and sales), sent to the sessions that asked for an instrument's prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradePrint {
    pub symbol: String,
    /// The instrument's trade count with this print: a jump means prints were skipped (a slow
    /// client's market lane keeps the newest per key); `GET /api/trades` has them all.
    pub seq: u64,
    pub event_id: String,
    pub price: Decimal,
    pub qty: i64,
    pub aggressor: Side,
    /// Exchange time (Unix micros).
    pub ts: Micros,
}

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "lowercase")]
pub enum Update {
    Instrument(InstrumentState),
    Candle(Candle),
    Position(PositionState),
    Fill(FillReport),
    Trade(TradePrint),
    /// An account's P&L, sampled every second (its 1 s or 1 min bucket).
    Pnl(PnlPoint),
}

/// The delivery lane of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Latest value wins: each update carries the full state of its key, so a slow client
    /// may be sent only the newest.
    Market,
    /// Must deliver, in order: never conflated, never dropped.
    Account,
}

impl Lane {
    /// The lane's name in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Market => "market",
            Lane::Account => "account",
        }
    }
}

/// Who may want an update: the subscription topic it is routed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic<'a> {
    Instrument(&'a str),
    Account(&'a str),
    /// An instrument's prints: only for sessions that asked for them.
    Prints(&'a str),
}

impl Update {
    pub fn key(&self) -> String {
        let key = match self {
            Update::Instrument(s) => Key::Instrument(&s.symbol),
            Update::Candle(c) => Key::Candle(&c.symbol, c.interval),
            Update::Position(p) => Key::Position { account: &p.account, symbol: &p.symbol },
            Update::Fill(f) => Key::Fills { account: &f.account, symbol: &f.symbol },
            Update::Trade(t) => Key::Trades(&t.symbol),
            Update::Pnl(p) => Key::Pnl { account: &p.account, interval: p.interval },
        };
        key.to_string()
    }

    pub fn seq(&self) -> u64 {
        match self {
            Update::Instrument(s) => s.seq,
            Update::Candle(c) => c.seq,
            Update::Position(p) => p.seq,
            Update::Fill(f) => f.seq,
            Update::Trade(t) => t.seq,
            Update::Pnl(p) => p.seq,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Update::Instrument(_) => "instrument",
            Update::Candle(_) => "candle",
            Update::Position(_) => "position",
            Update::Fill(_) => "fill",
            Update::Trade(_) => "trade",
            Update::Pnl(_) => "pnl",
        }
    }

    pub fn lane(&self) -> Lane {
        match self {
            Update::Fill(_) => Lane::Account,
            _ => Lane::Market,
        }
    }

    pub fn topic(&self) -> Topic<'_> {
        match self {
            Update::Instrument(s) => Topic::Instrument(&s.symbol),
            Update::Candle(c) => Topic::Instrument(&c.symbol),
            Update::Position(p) => Topic::Account(&p.account),
            Update::Fill(f) => Topic::Account(&f.account),
            Update::Trade(t) => Topic::Prints(&t.symbol),
            Update::Pnl(p) => Topic::Account(&p.account),
        }
    }
}

/// An update with its routing key and the ingest time of the raw event that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub key: String,
    pub ingest_ts: Micros,
    /// When the update passed the later hops (0: not yet, or state restored after a restart).
    pub hops: HopTimes,
    /// The trace of the event behind it, when sampled: the span of the last hop it passed.
    pub trace: Option<TraceContext>,
    pub update: Update,
}

/// When an update left the processor and when a cache took it (Unix µs; 0 when unknown). With
/// `ingest_ts` they split the end-to-end time into hops: ingest → processed → cached → written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopTimes {
    #[serde(default)]
    pub processed: Micros,
    #[serde(default)]
    pub cached: Micros,
}

impl HopTimes {
    fn is_unknown(&self) -> bool {
        self.processed == 0 && self.cached == 0
    }
}

impl Published {
    pub fn new(update: Update, ingest_ts: Micros) -> Self {
        Self { key: update.key(), ingest_ts, hops: HopTimes::default(), trace: None, update }
    }

    pub fn seq(&self) -> u64 {
        self.update.seq()
    }

    pub fn to_json(&self) -> String {
        self.wire_json(self.hops)
    }

    /// The JSON with the time a cache took it (unless an earlier cache already said).
    pub fn to_json_cached_at(&self, cached: Micros) -> String {
        let hops = if self.hops.cached == 0 { HopTimes { cached, ..self.hops } } else { self.hops };
        self.wire_json(hops)
    }

    fn wire_json(&self, hops: HopTimes) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            kind_of_message: &'static str,
            v: u32,
            key: &'a str,
            seq: u64,
            ingest_ts: Micros,
            #[serde(skip_serializing_if = "HopTimes::is_unknown")]
            hops: HopTimes,
            #[serde(with = "trace_context::json", skip_serializing_if = "Option::is_none")]
            traceparent: &'a Option<TraceContext>,
            #[serde(flatten)]
            update: &'a Update,
        }
        let wire = Wire {
            kind_of_message: "update",
            v: WIRE_VERSION,
            key: &self.key,
            seq: self.seq(),
            ingest_ts: self.ingest_ts,
            hops,
            traceparent: &self.trace,
            update: &self.update,
        };
        // Serializing plain data structs into a String cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    pub fn from_json(text: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Wire {
            ingest_ts: Micros,
            #[serde(default)]
            hops: HopTimes,
            #[serde(default, with = "trace_context::json")]
            traceparent: Option<TraceContext>,
            #[serde(flatten)]
            update: Update,
        }
        let wire: Wire = serde_json::from_slice(text)?;
        Ok(Self { hops: wire.hops, trace: wire.traceparent, ..Self::new(wire.update, wire.ingest_ts) })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    #[test]
    fn hop_times_travel_with_the_update_and_old_json_reads_without_them() {
        let mut published = Published::new(Update::Instrument(InstrumentState::empty("ESZ6")), 100);
        assert!(!published.to_json().contains("hops"), "unknown hops are left out");
        published.hops.processed = 150;
        let cached = Published::from_json(published.to_json_cached_at(180).as_bytes()).expect("json");
        assert_eq!((cached.ingest_ts, cached.hops), (100, HopTimes { processed: 150, cached: 180 }));
        // A second cache (an api process's mirror) keeps the first cache's time.
        let again = Published::from_json(cached.to_json_cached_at(999).as_bytes()).expect("json");
        assert_eq!(again.hops.cached, 180);
        let old = br#"{"type":"update","v":1,"key":"inst:ESZ6","seq":0,"ingest_ts":7,"kind":"instrument","data":{"symbol":"ESZ6","seq":0,"bid":null,"ask":null,"mid":null,"spread":null,"last":null,"open":null,"high":null,"low":null,"change":null,"change_pct":null,"volume":0,"vwap":null,"trades":0,"updated_at":0}}"#;
        assert_eq!(Published::from_json(old).expect("old json").hops, HopTimes::default());
    }

    use super::*;

    #[test]
    fn a_sampled_trace_travels_with_the_update_and_a_bad_one_is_dropped_not_refused() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut published = Published::new(Update::Instrument(InstrumentState::empty("ESZ6")), 100);
        assert!(!published.to_json().contains("traceparent"), "an unsampled update carries nothing");
        published.trace = trace_context::from_traceparent(traceparent);
        let json = published.to_json_cached_at(5);
        assert!(json.contains(&format!(r#""traceparent":"{traceparent}""#)), "{json}");
        assert_eq!(Published::from_json(json.as_bytes()).expect("json").trace, published.trace);
        let forged = json.replace(traceparent, "00-zz-<b>-01");
        let read = Published::from_json(forged.as_bytes()).expect("a bad trace never refuses the update");
        assert_eq!((read.trace, read.update), (None, published.update));
    }

    #[test]
    fn wire_round_trip() {
        let mut state = InstrumentState::empty("ESZ6");
        state.seq = 7;
        state.bid = Some("6850.25".parse().unwrap());
        let published = Published::new(Update::Instrument(state), 123);
        let json = published.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["type"], "update");
        assert_eq!(value["v"], 1);
        assert_eq!(value["kind"], "instrument");
        assert_eq!(value["key"], "inst:ESZ6");
        assert_eq!(value["seq"], 7);
        assert_eq!(value["ingest_ts"], 123);
        assert_eq!(value["data"]["bid"], "6850.25");
        assert_eq!(value["data"]["symbol"], "ESZ6");
        assert_eq!(Published::from_json(json.as_bytes()).unwrap(), published);
    }
}
