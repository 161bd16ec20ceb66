//! The processing core: applies validated events to the market, candle and position state,
//! and says what to publish and what to store. Pure: no clocks, no I/O.
//!
//! Deduplication is exact for streams whose sequences grow per source and instrument (which a
//! Kafka partition keyed by instrument, a replay file and the simulator all give): an event whose
//! sequence is at or below the watermark of its (source, instrument) was applied already. A fill
//! is also refused a second time by its `fill_id`, whatever its event id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::Micros;
use super::candles::{Candle, CandleBook, CandleOutcome, Interval};
use super::events::{EventBody, Fill, Quote, Trade, ValidEvent};
use super::instruments::{InstrumentCatalog, InstrumentSpec};
use super::market::InstrumentBook;
use super::positions::PositionState;
use super::updates::{FillReport, Published, Update};

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before (by event id watermark or fill id): nothing changed.
    Duplicate,
    /// Applied, but the trade was older than the current candle, which it did not change.
    AppliedLateForCandles,
    /// The instrument is not in the catalog (events are validated before, so this means the
    /// catalog changed under a stream): nothing changed.
    UnknownInstrument,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TradeRecord {
    pub event_id: String,
    pub trade: Trade,
    pub ts: Micros,
    pub ingest_ts: Micros,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FillRecord {
    pub event_id: String,
    pub report: FillReport,
}

/// Everything a batch of events changed, coalesced to the latest state per key: what one
/// database transaction writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub trades: Vec<TradeRecord>,
    pub fills: Vec<FillRecord>,
    pub candles: BTreeMap<(String, Interval, Micros), Candle>,
    pub instruments: BTreeMap<String, InstrumentBook>,
    pub positions: BTreeMap<(String, String), PositionState>,
    pub watermarks: BTreeMap<(String, String), u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }

    /// Rows this will write.
    pub fn rows(&self) -> usize {
        self.trades.len()
            + self.fills.len()
            + self.candles.len()
            + self.instruments.len()
            + self.positions.len()
            + self.watermarks.len()
    }

    /// Adds later changes on top of these ones (later states win).
    pub fn merge(&mut self, later: Changes) {
        self.trades.extend(later.trades);
        self.fills.extend(later.fills);
        self.candles.extend(later.candles);
        self.instruments.extend(later.instruments);
        self.positions.extend(later.positions);
        self.watermarks.extend(later.watermarks);
    }
}

/// The durable state an engine is rebuilt from after a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSnapshot {
    pub books: Vec<InstrumentBook>,
    /// The latest candle of each symbol and interval (its `seq` is the series' seq).
    pub candles: Vec<Candle>,
    pub positions: Vec<PositionState>,
    /// Number of fills per (account, instrument) so far: the account lane's seq. It is per
    /// instrument because raw events are partitioned by instrument, so one processor owns it.
    pub fill_seqs: Vec<(String, String, u64)>,
    /// The latest fill of each (account, instrument) (what the account lane last published).
    pub last_fills: Vec<FillReport>,
    pub fill_ids: Vec<String>,
    /// (source, instrument, last applied sequence)
    pub watermarks: Vec<(String, String, u64)>,
}

pub struct Engine {
    catalog: Arc<InstrumentCatalog>,
    books: HashMap<String, InstrumentBook>,
    candles: HashMap<(String, Interval), CandleBook>,
    positions: HashMap<(String, String), PositionState>,
    /// Accounts with a position in each symbol: who to re-mark when its mid moves.
    holders: HashMap<String, BTreeSet<String>>,
    fill_seqs: HashMap<(String, String), u64>,
    last_fills: HashMap<(String, String), FillReport>,
    fill_ids: HashSet<String>,
    watermarks: HashMap<(String, String), u64>,
}

impl Engine {
    pub fn new(catalog: Arc<InstrumentCatalog>) -> Self {
        Self {
            catalog,
            books: HashMap::new(),
            candles: HashMap::new(),
            positions: HashMap::new(),
            holders: HashMap::new(),
            fill_seqs: HashMap::new(),
            last_fills: HashMap::new(),
            fill_ids: HashSet::new(),
            watermarks: HashMap::new(),
        }
    }

    pub fn restore(catalog: Arc<InstrumentCatalog>, snapshot: EngineSnapshot) -> Self {
        let mut engine = Self::new(catalog);
        for book in snapshot.books {
            engine.books.insert(book.state.symbol.clone(), book);
        }
        for candle in snapshot.candles {
            let seq = candle.seq;
            engine.candles.insert((candle.symbol.clone(), candle.interval), CandleBook { current: Some(candle), seq });
        }
        for position in snapshot.positions {
            engine.holders.entry(position.symbol.clone()).or_default().insert(position.account.clone());
            engine.positions.insert((position.account.clone(), position.symbol.clone()), position);
        }
        engine.fill_seqs.extend(snapshot.fill_seqs.into_iter().map(|(a, s, seq)| ((a, s), seq)));
        engine.last_fills.extend(snapshot.last_fills.into_iter().map(|f| ((f.account.clone(), f.symbol.clone()), f)));
        engine.fill_ids.extend(snapshot.fill_ids);
        engine.watermarks.extend(snapshot.watermarks.into_iter().map(|(s, i, seq)| ((s, i), seq)));
        engine
    }

    pub fn catalog(&self) -> &Arc<InstrumentCatalog> {
        &self.catalog
    }

    /// The current state of every key, as updates (after a restore: what a cache needs to
    /// serve snapshots again). Their `ingest_ts` is 0: they were not caused by a new event.
    pub fn current_state(&self) -> Vec<Published> {
        let mut out = Vec::new();
        out.extend(self.books.values().map(|b| Published::new(Update::Instrument(b.state.clone()), 0)));
        out.extend(
            self.candles.values().filter_map(|c| c.current.clone()).map(|c| Published::new(Update::Candle(c), 0)),
        );
        out.extend(self.positions.values().map(|p| Published::new(Update::Position(p.clone()), 0)));
        out.extend(self.last_fills.values().map(|f| Published::new(Update::Fill(f.clone()), 0)));
        out
    }

    /// Applies one event: appends what to publish to `out` and what to store to `changes`.
    pub fn apply(&mut self, event: &ValidEvent, out: &mut Vec<Published>, changes: &mut Changes) -> Outcome {
        let instrument = event.body.instrument();
        let Some(spec) = self.catalog.get(instrument).cloned() else {
            return Outcome::UnknownInstrument;
        };
        let mark_key = (event.id.source.clone(), instrument.to_owned());
        if self.watermarks.get(&mark_key).is_some_and(|&last| event.id.seq <= last) {
            return Outcome::Duplicate;
        }
        if let EventBody::Fill(fill) = &event.body
            && self.fill_ids.contains(&fill.fill_id)
        {
            // Still advance the watermark so the stream position is stored.
            self.watermarks.insert(mark_key.clone(), event.id.seq);
            changes.watermarks.insert(mark_key, event.id.seq);
            return Outcome::Duplicate;
        }
        self.watermarks.insert(mark_key.clone(), event.id.seq);
        changes.watermarks.insert(mark_key, event.id.seq);

        let publish = |out: &mut Vec<Published>, update: Update| out.push(Published::new(update, event.ingest_ts));
        match &event.body {
            EventBody::Quote(quote) => {
                self.apply_quote(&spec, quote, event.ts, changes, &mut |u| publish(out, u));
                Outcome::Applied
            }
            EventBody::Trade(trade) => {
                let outcome = self.apply_trade(trade, event.ts, changes, &mut |u| publish(out, u));
                changes.trades.push(TradeRecord {
                    event_id: event.id.to_string(),
                    trade: trade.clone(),
                    ts: event.ts,
                    ingest_ts: event.ingest_ts,
                });
                outcome
            }
            EventBody::Fill(fill) => {
                let report = self.apply_fill(&spec, fill, event.ts, changes);
                publish(out, Update::Position(report.position.clone()));
                publish(out, Update::Fill(report.clone()));
                changes.fills.push(FillRecord { event_id: event.id.to_string(), report });
                Outcome::Applied
            }
        }
    }

    fn book(&mut self, symbol: &str) -> &mut InstrumentBook {
        self.books.entry(symbol.to_owned()).or_insert_with(|| InstrumentBook::new(symbol))
    }

    fn apply_quote(
        &mut self,
        spec: &InstrumentSpec,
        quote: &Quote,
        ts: Micros,
        changes: &mut Changes,
        publish: &mut dyn FnMut(Update),
    ) {
        let book = self.book(&quote.instrument);
        book.apply_quote(quote, ts);
        let mid = book.state.mid;
        publish(Update::Instrument(book.state.clone()));
        changes.instruments.insert(quote.instrument.clone(), book.clone());
        let Some(mid) = mid else { return };
        let Some(accounts) = self.holders.get(&quote.instrument) else {
            return;
        };
        for account in accounts {
            let key = (account.clone(), quote.instrument.clone());
            if let Some(position) = self.positions.get_mut(&key)
                && position.mark(mid, spec.multiplier, ts)
            {
                publish(Update::Position(position.clone()));
                changes.positions.insert(key, position.clone());
            }
        }
    }

    fn apply_trade(
        &mut self,
        trade: &Trade,
        ts: Micros,
        changes: &mut Changes,
        publish: &mut dyn FnMut(Update),
    ) -> Outcome {
        let book = self.book(&trade.instrument);
        book.apply_trade(trade, ts);
        publish(Update::Instrument(book.state.clone()));
        changes.instruments.insert(trade.instrument.clone(), book.clone());
        let mut outcome = Outcome::Applied;
        for interval in Interval::ALL {
            let series = self.candles.entry((trade.instrument.clone(), interval)).or_default();
            match series.apply_trade(&trade.instrument, interval, trade.price, trade.qty, ts) {
                CandleOutcome::Updated => {
                    if let Some(candle) = &series.current {
                        publish(Update::Candle(candle.clone()));
                        changes.candles.insert((candle.symbol.clone(), interval, candle.start), candle.clone());
                    }
                }
                CandleOutcome::Late => outcome = Outcome::AppliedLateForCandles,
            }
        }
        outcome
    }

    fn apply_fill(&mut self, spec: &InstrumentSpec, fill: &Fill, ts: Micros, changes: &mut Changes) -> FillReport {
        let mark = self.books.get(&fill.instrument).and_then(|b| b.state.mid);
        let key = (fill.account.clone(), fill.instrument.clone());
        let position =
            self.positions.entry(key.clone()).or_insert_with(|| PositionState::flat(&fill.account, &fill.instrument));
        position.apply_fill(fill.side, fill.price, fill.qty, spec.multiplier, mark, ts);
        let position = position.clone();
        changes.positions.insert(key.clone(), position.clone());
        self.holders.entry(fill.instrument.clone()).or_default().insert(fill.account.clone());
        self.fill_ids.insert(fill.fill_id.clone());
        let seq = self.fill_seqs.entry(key.clone()).or_default();
        *seq += 1;
        let report = FillReport {
            account: fill.account.clone(),
            seq: *seq,
            fill_id: fill.fill_id.clone(),
            order_id: fill.order_id.clone(),
            symbol: fill.instrument.clone(),
            side: fill.side,
            price: fill.price,
            qty: fill.qty,
            ts,
            position,
        };
        self.last_fills.insert(key, report.clone());
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventId, RawEvent};

    fn engine() -> Engine {
        Engine::new(Arc::new(InstrumentCatalog::default_futures()))
    }

    fn event(source: &str, seq: u64, ts: Micros, json: &str) -> ValidEvent {
        let raw = RawEvent::decode(json.as_bytes()).unwrap();
        let id = EventId { source: source.into(), seq };
        let mut raw = raw;
        raw.event_id = Some(id.to_string());
        raw.ts = Some(ts);
        raw.validate(&InstrumentCatalog::default_futures(), ts + 5, &mut || unreachable!()).unwrap()
    }

    fn stream() -> Vec<ValidEvent> {
        vec![
            event(
                "t",
                1,
                1_000_000,
                r#"{"type":"quote","instrument":"ESZ6","bid":"6850","bid_qty":1,"ask":"6850.5","ask_qty":1}"#,
            ),
            event(
                "t",
                2,
                1_100_000,
                r#"{"type":"trade","instrument":"ESZ6","price":"6850.5","qty":2,"aggressor":"buy"}"#,
            ),
            event(
                "t",
                3,
                1_200_000,
                r#"{"type":"fill","account":"ACC1","order_id":"o1","fill_id":"f1","instrument":"ESZ6","side":"buy","price":"6850","qty":2}"#,
            ),
            event(
                "t",
                4,
                2_300_000,
                r#"{"type":"quote","instrument":"ESZ6","bid":"6851","bid_qty":1,"ask":"6851.5","ask_qty":1}"#,
            ),
        ]
    }

    #[test]
    fn a_stream_produces_states_candles_positions_and_fills() {
        let mut engine = engine();
        let mut out = Vec::new();
        let mut changes = Changes::default();
        for e in stream() {
            assert_eq!(engine.apply(&e, &mut out, &mut changes), Outcome::Applied);
        }
        let keys: Vec<(String, u64)> = out.iter().map(|p| (p.key.clone(), p.seq())).collect();
        let expect = |k: &str, s: u64| (k.to_owned(), s);
        assert_eq!(
            keys,
            vec![
                expect("inst:ESZ6", 1),
                expect("inst:ESZ6", 2),
                expect("candle:ESZ6:1s", 1),
                expect("candle:ESZ6:1m", 1),
                expect("pos:ACC1:ESZ6", 1),
                expect("fills:ACC1:ESZ6", 1),
                expect("inst:ESZ6", 3),
                // The quote moved the mid from 6850.25 to 6851.25: the position is re-marked.
                expect("pos:ACC1:ESZ6", 2),
            ]
        );
        let Update::Position(p) = &out[7].update else { panic!("position expected") };
        // (6851.25 - 6850) * 2 * 50 = 125
        assert_eq!(p.unrealized_pnl.to_string(), "125");
        let Update::Position(p) = &out[4].update else { panic!("position expected") };
        // Marked at the fill to mid 6850.25: 0.25 * 2 * 50 = 25
        assert_eq!(p.unrealized_pnl.to_string(), "25");
        // Each update carries the ingest time of the event that caused it.
        let ingest: Vec<Micros> = out.iter().map(|p| p.ingest_ts).collect();
        assert_eq!(ingest, [1_000_005, 1_100_005, 1_100_005, 1_100_005, 1_200_005, 1_200_005, 2_300_005, 2_300_005]);
        assert_eq!(changes.trades.len(), 1);
        assert_eq!(changes.fills.len(), 1);
        assert_eq!(changes.candles.len(), 2);
        assert_eq!(changes.instruments.len(), 1, "coalesced to the latest state");
        assert_eq!(changes.instruments["ESZ6"].state.seq, 3);
        assert_eq!(changes.positions[&("ACC1".to_owned(), "ESZ6".to_owned())].seq, 2);
        assert_eq!(changes.watermarks[&("t".to_owned(), "ESZ6".to_owned())], 4);
    }

    #[test]
    fn replaying_changes_nothing() {
        let mut engine = engine();
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        for e in stream() {
            engine.apply(&e, &mut out, &mut changes);
        }
        let (mut out2, mut changes2) = (Vec::new(), Changes::default());
        for e in stream() {
            assert_eq!(engine.apply(&e, &mut out2, &mut changes2), Outcome::Duplicate);
        }
        assert!(out2.is_empty());
        assert!(changes2.is_empty());
    }

    #[test]
    fn same_fill_under_another_event_id_is_a_duplicate() {
        let mut engine = engine();
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        let fill = r#"{"type":"fill","account":"ACC1","order_id":"o1","fill_id":"f1","instrument":"ESZ6","side":"buy","price":"6850","qty":2}"#;
        assert_eq!(engine.apply(&event("a", 1, 1, fill), &mut out, &mut changes), Outcome::Applied);
        assert_eq!(engine.apply(&event("b", 1, 1, fill), &mut out, &mut changes), Outcome::Duplicate);
        assert_eq!(out.len(), 2, "one position and one fill report");
    }

    #[test]
    fn restored_engine_continues_where_it_stopped() {
        let events = stream();
        let mut full = engine();
        let (mut out_full, mut changes_full) = (Vec::new(), Changes::default());
        for e in &events {
            full.apply(e, &mut out_full, &mut changes_full);
        }

        // Run the first three, persist what they changed, restore, run the rest.
        let mut first = engine();
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        for e in &events[..3] {
            first.apply(e, &mut out, &mut changes);
        }
        let snapshot = EngineSnapshot {
            books: changes.instruments.values().cloned().collect(),
            candles: changes.candles.values().cloned().collect(),
            positions: changes.positions.values().cloned().collect(),
            fill_seqs: vec![("ACC1".into(), "ESZ6".into(), 1)],
            last_fills: changes.fills.iter().map(|f| f.report.clone()).collect(),
            fill_ids: vec!["f1".into()],
            watermarks: changes.watermarks.iter().map(|((s, i), q)| (s.clone(), i.clone(), *q)).collect(),
        };
        let mut restored = Engine::restore(Arc::new(InstrumentCatalog::default_futures()), snapshot);
        // The restored state is the state the first run published last.
        let mut current: Vec<(String, u64)> =
            restored.current_state().iter().map(|p| (p.key.clone(), p.seq())).collect();
        current.sort();
        assert_eq!(
            current,
            vec![
                ("candle:ESZ6:1m".to_string(), 1),
                ("candle:ESZ6:1s".to_string(), 1),
                ("fills:ACC1:ESZ6".to_string(), 1),
                ("inst:ESZ6".to_string(), 2),
                ("pos:ACC1:ESZ6".to_string(), 1),
            ]
        );
        // Replaying the already-applied prefix is a no-op, the rest continues the seqs.
        for e in &events[..3] {
            assert_eq!(restored.apply(e, &mut out, &mut changes), Outcome::Duplicate);
        }
        let mut tail = Vec::new();
        restored.apply(&events[3], &mut tail, &mut changes);
        assert_eq!(tail, out_full[6..].to_vec());
    }

    #[test]
    fn late_trade_counts_in_volume_not_in_closed_candle() {
        let mut engine = engine();
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        let t = r#"{"type":"trade","instrument":"ESZ6","price":"6850","qty":1,"aggressor":"sell"}"#;
        engine.apply(&event("t", 1, 5_000_000, t), &mut out, &mut changes);
        let outcome = engine.apply(&event("t", 2, 4_000_000, t), &mut out, &mut changes);
        assert_eq!(outcome, Outcome::AppliedLateForCandles);
        assert_eq!(changes.instruments["ESZ6"].state.volume, 2);
    }
}
