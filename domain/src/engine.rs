//! The processing core: applies validated events to the market, candle and position state,
//! and says what to publish and what to store. Pure: no clocks, no I/O.
//!
//! Deduplication is exact for streams whose sequences grow per source and instrument (which a
//! Kafka partition keyed by instrument, a replay file and the simulator all give): an event whose
//! sequence is at or below the watermark of its (source, instrument) was applied already. A fill
//! is also refused a second time by its `fill_id`, whatever its event id.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;
use std::sync::Arc;

use super::Micros;
use super::candles::{Candle, CandleBook, CandleOutcome, Interval};
use super::checked::OrRefuse;
use super::events::{EventBody, Fill, Quote, Side, Trade, ValidEvent, ValidationError};
use super::instruments::{InstrumentCatalog, InstrumentSpec};
use super::market::InstrumentBook;
use super::positions::PositionState;
use super::updates::{FillReport, Published, TradePrint, Update};

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before (by event id watermark or fill id): nothing changed.
    Duplicate,
    /// Applied, but the trade was older than the current candle, which it did not change.
    AppliedLateForCandles,
    /// A quote older than the one the book shows: nothing changed (its id is recorded).
    Stale,
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
        [
            self.trades.len(),
            self.fills.len(),
            self.candles.len(),
            self.instruments.len(),
            self.positions.len(),
            self.watermarks.len(),
        ]
        .into_iter()
        .fold(0, usize::saturating_add)
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

/// A fill's identity: (account, instrument, fill id). Fill ids are unique per account and
/// instrument, which is what one processor (owning the instrument's partition) can check.
pub type FillKey = (String, String, String);

/// What a fill said, to tell the same fill sent again from another fill under a used id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillTerms {
    pub side: Side,
    pub price: Decimal,
    pub qty: i64,
}

impl FillTerms {
    pub fn of(fill: &Fill) -> Self {
        Self { side: fill.side, price: fill.price, qty: fill.qty }
    }

    pub fn key(fill: &Fill) -> FillKey {
        (fill.account.clone(), fill.instrument.clone(), fill.fill_id.clone())
    }
}

impl std::fmt::Display for FillTerms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} at {}", self.side.as_str(), self.qty, self.price)
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
    /// Every stored fill's identity and terms.
    pub fill_ids: Vec<(FillKey, FillTerms)>,
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
    /// Every fill applied, by (account, instrument, fill id), with what it said.
    fill_ids: HashMap<FillKey, FillTerms>,
    watermarks: HashMap<(String, String), u64>,
    /// Whether a trade also produces its print (a `trade` update); see [`Engine::with_prints`].
    prints: bool,
}

impl Engine {
    /// With `false`, trades produce no `trade` update (no time and sales downstream), so none
    /// is built only to be dropped.
    pub fn with_prints(mut self, prints: bool) -> Self {
        self.prints = prints;
        self
    }

    pub fn new(catalog: Arc<InstrumentCatalog>) -> Self {
        Self {
            catalog,
            books: HashMap::new(),
            candles: HashMap::new(),
            positions: HashMap::new(),
            holders: HashMap::new(),
            fill_seqs: HashMap::new(),
            last_fills: HashMap::new(),
            fill_ids: HashMap::new(),
            watermarks: HashMap::new(),
            prints: true,
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
    ///
    /// All or nothing: an event whose effects cannot be computed (a sum or product that would
    /// overflow) is refused with the field at fault, and nothing changed, not even the
    /// watermark, so the next event is applied as if the refused one had never come.
    pub fn apply(
        &mut self,
        event: &ValidEvent,
        out: &mut Vec<Published>,
        changes: &mut Changes,
    ) -> Result<Outcome, ValidationError> {
        let instrument = event.body.instrument();
        let Some(spec) = self.catalog.get(instrument).cloned() else {
            return Ok(Outcome::UnknownInstrument);
        };
        let mark_key = (event.id.source.clone(), instrument.to_owned());
        if self.watermarks.get(&mark_key).is_some_and(|&last| event.id.seq <= last) {
            return Ok(Outcome::Duplicate);
        }
        let outcome = match &event.body {
            EventBody::Fill(fill) if let Some(terms) = self.fill_ids.get(&FillTerms::key(fill)) => {
                if *terms != FillTerms::of(fill) {
                    return Err(ValidationError::new(
                        "fill_id",
                        format!(
                            "`{}` of account {} in {} was already applied as another fill ({terms}); a fill id \
                             names one fill",
                            fill.fill_id, fill.account, fill.instrument
                        ),
                    ));
                }
                // The same fill again. Still advance the watermark so the stream position is stored.
                Outcome::Duplicate
            }
            EventBody::Quote(quote) => self.apply_quote(&spec, quote, event, out, changes)?,
            EventBody::Trade(trade) => {
                let outcome = self.apply_trade(trade, event, out, changes)?;
                changes.trades.push(TradeRecord {
                    event_id: event.id.to_string(),
                    trade: trade.clone(),
                    ts: event.ts,
                    ingest_ts: event.ingest_ts,
                });
                outcome
            }
            EventBody::Fill(fill) => {
                let report = self.apply_fill(&spec, fill, event.ts, changes)?;
                out.push(Published::new(Update::Position(report.position.clone()), event.ingest_ts));
                out.push(Published::new(Update::Fill(report.clone()), event.ingest_ts));
                changes.fills.push(FillRecord { event_id: event.id.to_string(), report });
                Outcome::Applied
            }
        };
        self.watermarks.insert(mark_key.clone(), event.id.seq);
        changes.watermarks.insert(mark_key, event.id.seq);
        Ok(outcome)
    }

    fn book(&self, symbol: &str) -> InstrumentBook {
        self.books.get(symbol).cloned().unwrap_or_else(|| InstrumentBook::new(symbol))
    }

    /// The quote's new book and every re-marked position are computed first and kept only if
    /// all of them fit.
    fn apply_quote(
        &mut self,
        spec: &InstrumentSpec,
        quote: &Quote,
        event: &ValidEvent,
        out: &mut Vec<Published>,
        changes: &mut Changes,
    ) -> Result<Outcome, ValidationError> {
        let mut book = self.book(&quote.instrument);
        if !book.apply_quote(quote, event.ts)? {
            return Ok(Outcome::Stale);
        }
        let mut marked = Vec::new();
        if let Some(mid) = book.state.mid
            && let Some(accounts) = self.holders.get(&quote.instrument)
        {
            for account in accounts {
                let key = (account.clone(), quote.instrument.clone());
                let Some(mut position) = self.positions.get(&key).cloned() else { continue };
                match position.mark(mid, spec.multiplier, event.ts) {
                    Some(true) => marked.push((key, position)),
                    Some(false) => {}
                    None => {
                        return Err(ValidationError::new(
                            "bid",
                            format!("applying it would overflow the unrealized P&L of account {account}"),
                        ));
                    }
                }
            }
        }
        out.push(Published::new(Update::Instrument(book.state.clone()), event.ingest_ts));
        changes.instruments.insert(quote.instrument.clone(), book.clone());
        self.books.insert(quote.instrument.clone(), book);
        for (key, position) in marked {
            out.push(Published::new(Update::Position(position.clone()), event.ingest_ts));
            changes.positions.insert(key.clone(), position.clone());
            self.positions.insert(key, position);
        }
        Ok(Outcome::Applied)
    }

    /// The trade's new book and candles are computed first and kept only if all of them fit.
    fn apply_trade(
        &mut self,
        trade: &Trade,
        event: &ValidEvent,
        out: &mut Vec<Published>,
        changes: &mut Changes,
    ) -> Result<Outcome, ValidationError> {
        let mut book = self.book(&trade.instrument);
        book.apply_trade(trade, event.ts)?;
        // A trade cannot have happened after it reached ttpulse: one dated ahead (a fast clock)
        // is bucketed at its arrival, so it never moves the candles past the others.
        let candle_ts = event.ts.min(event.ingest_ts);
        let mut series = Vec::with_capacity(Interval::ALL.len());
        for interval in Interval::ALL {
            let key = (trade.instrument.clone(), interval);
            let mut candles = self.candles.get(&key).cloned().unwrap_or_default();
            let outcome = candles.apply_trade(&trade.instrument, interval, trade.price, trade.qty, candle_ts)?;
            series.push((key, candles, outcome));
        }
        out.push(Published::new(Update::Instrument(book.state.clone()), event.ingest_ts));
        if self.prints {
            let print = TradePrint {
                symbol: trade.instrument.clone(),
                seq: book.state.trades,
                event_id: event.id.to_string(),
                price: trade.price,
                qty: trade.qty,
                aggressor: trade.aggressor,
                ts: event.ts,
            };
            out.push(Published::new(Update::Trade(print), event.ingest_ts));
        }
        changes.instruments.insert(trade.instrument.clone(), book.clone());
        self.books.insert(trade.instrument.clone(), book);
        let mut outcome = Outcome::Applied;
        for (key, candles, candle_outcome) in series {
            match candle_outcome {
                CandleOutcome::Updated => {
                    if let Some(candle) = &candles.current {
                        out.push(Published::new(Update::Candle(candle.clone()), event.ingest_ts));
                        changes.candles.insert((candle.symbol.clone(), key.1, candle.start), candle.clone());
                    }
                    self.candles.insert(key, candles);
                }
                CandleOutcome::Late => outcome = Outcome::AppliedLateForCandles,
            }
        }
        Ok(outcome)
    }

    fn apply_fill(
        &mut self,
        spec: &InstrumentSpec,
        fill: &Fill,
        ts: Micros,
        changes: &mut Changes,
    ) -> Result<FillReport, ValidationError> {
        let mark = self.books.get(&fill.instrument).and_then(|b| b.state.mid);
        let key = (fill.account.clone(), fill.instrument.clone());
        let mut position =
            self.positions.get(&key).cloned().unwrap_or_else(|| PositionState::flat(&fill.account, &fill.instrument));
        position.apply_fill(fill.side, fill.price, fill.qty, spec.multiplier, mark, ts)?;
        let seq = self.fill_seqs.get(&key).copied().unwrap_or(0).checked_add(1).or_refuse("fill", "the fill seq")?;
        changes.positions.insert(key.clone(), position.clone());
        self.positions.insert(key.clone(), position.clone());
        self.holders.entry(fill.instrument.clone()).or_default().insert(fill.account.clone());
        self.fill_ids.insert(FillTerms::key(fill), FillTerms::of(fill));
        self.fill_seqs.insert(key.clone(), seq);
        let report = FillReport {
            account: fill.account.clone(),
            seq,
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
        Ok(report)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::{EventId, RawEvent};

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
    fn without_prints_a_trade_changes_the_same_state_and_publishes_no_print() {
        let (mut with, mut without) = (engine(), engine().with_prints(false));
        let (mut out_with, mut out_without) = (Vec::new(), Vec::new());
        let (mut changes_with, mut changes_without) = (Changes::default(), Changes::default());
        for e in stream() {
            with.apply(&e, &mut out_with, &mut changes_with).expect("applied");
            without.apply(&e, &mut out_without, &mut changes_without).expect("applied");
        }
        let prints = |out: &[Published]| out.iter().filter(|p| matches!(p.update, Update::Trade(_))).count();
        assert_eq!((prints(&out_with), prints(&out_without)), (1, 0));
        let others: Vec<String> =
            out_with.iter().filter(|p| !matches!(p.update, Update::Trade(_))).map(|p| p.to_json()).collect();
        assert_eq!(others, out_without.iter().map(|p| p.to_json()).collect::<Vec<_>>());
        // The trade itself is still stored (the record), only its print is not published.
        assert_eq!(changes_without.trades.len(), 1);
    }

    #[test]
    fn a_stream_produces_states_candles_positions_and_fills() {
        let mut engine = engine();
        let mut out = Vec::new();
        let mut changes = Changes::default();
        for e in stream() {
            assert_eq!(engine.apply(&e, &mut out, &mut changes), Ok(Outcome::Applied));
        }
        let keys: Vec<(String, u64)> = out.iter().map(|p| (p.key.clone(), p.seq())).collect();
        let expect = |k: &str, s: u64| (k.to_owned(), s);
        assert_eq!(
            keys,
            vec![
                expect("inst:ESZ6", 1),
                expect("inst:ESZ6", 2),
                expect("trades:ESZ6", 1),
                expect("candle:ESZ6:1s", 1),
                expect("candle:ESZ6:1m", 1),
                expect("pos:ACC1:ESZ6", 1),
                expect("fills:ACC1:ESZ6", 1),
                expect("inst:ESZ6", 3),
                // The quote moved the mid from 6850.25 to 6851.25: the position is re-marked.
                expect("pos:ACC1:ESZ6", 2),
            ]
        );
        let Update::Position(p) = &out[8].update else { panic!("position expected") };
        // (6851.25 - 6850) * 2 * 50 = 125
        assert_eq!(p.unrealized_pnl.to_string(), "125");
        let Update::Position(p) = &out[5].update else { panic!("position expected") };
        // Marked at the fill to mid 6850.25: 0.25 * 2 * 50 = 25
        assert_eq!(p.unrealized_pnl.to_string(), "25");
        // Each update carries the ingest time of the event that caused it.
        let ingest: Vec<Micros> = out.iter().map(|p| p.ingest_ts).collect();
        assert_eq!(
            ingest,
            [1_000_005, 1_100_005, 1_100_005, 1_100_005, 1_100_005, 1_200_005, 1_200_005, 2_300_005, 2_300_005]
        );
        // The print: the instrument's trade count, the event that carried it.
        let Update::Trade(print) = &out[2].update else { panic!("print expected") };
        assert_eq!((print.seq, print.event_id.as_str(), print.qty), (1, "t:2", 2));
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
            engine.apply(&e, &mut out, &mut changes).unwrap();
        }
        let (mut out2, mut changes2) = (Vec::new(), Changes::default());
        for e in stream() {
            assert_eq!(engine.apply(&e, &mut out2, &mut changes2), Ok(Outcome::Duplicate));
        }
        assert!(out2.is_empty());
        assert!(changes2.is_empty());
    }

    #[test]
    fn same_fill_under_another_event_id_is_a_duplicate() {
        let mut engine = engine();
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        let fill = r#"{"type":"fill","account":"ACC1","order_id":"o1","fill_id":"f1","instrument":"ESZ6","side":"buy","price":"6850","qty":2}"#;
        assert_eq!(engine.apply(&event("a", 1, 1, fill), &mut out, &mut changes), Ok(Outcome::Applied));
        assert_eq!(engine.apply(&event("b", 1, 1, fill), &mut out, &mut changes), Ok(Outcome::Duplicate));
        assert_eq!(out.len(), 2, "one position and one fill report");
    }

    #[test]
    fn restored_engine_continues_where_it_stopped() {
        let events = stream();
        let mut full = engine();
        let (mut out_full, mut changes_full) = (Vec::new(), Changes::default());
        for e in &events {
            full.apply(e, &mut out_full, &mut changes_full).unwrap();
        }

        // Run the first three, persist what they changed, restore, run the rest.
        let mut first = engine();
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        for e in &events[..3] {
            first.apply(e, &mut out, &mut changes).unwrap();
        }
        let snapshot = EngineSnapshot {
            books: changes.instruments.values().cloned().collect(),
            candles: changes.candles.values().cloned().collect(),
            positions: changes.positions.values().cloned().collect(),
            fill_seqs: vec![("ACC1".into(), "ESZ6".into(), 1)],
            last_fills: changes.fills.iter().map(|f| f.report.clone()).collect(),
            fill_ids: vec![(
                ("ACC1".into(), "ESZ6".into(), "f1".into()),
                FillTerms { side: Side::Buy, price: "6850".parse().unwrap(), qty: 2 },
            )],
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
            assert_eq!(restored.apply(e, &mut out, &mut changes), Ok(Outcome::Duplicate));
        }
        let mut tail = Vec::new();
        restored.apply(&events[3], &mut tail, &mut changes).unwrap();
        assert_eq!(tail, out_full[7..].to_vec());
    }

    #[test]
    fn late_trade_counts_in_volume_not_in_closed_candle() {
        let mut engine = engine();
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        let t = r#"{"type":"trade","instrument":"ESZ6","price":"6850","qty":1,"aggressor":"sell"}"#;
        engine.apply(&event("t", 1, 5_000_000, t), &mut out, &mut changes).unwrap();
        let outcome = engine.apply(&event("t", 2, 4_000_000, t), &mut out, &mut changes).unwrap();
        assert_eq!(outcome, Outcome::AppliedLateForCandles);
        assert_eq!(changes.instruments["ESZ6"].state.volume, 2);
    }

    fn catalog_with(max_qty: i64) -> Arc<InstrumentCatalog> {
        Arc::new(InstrumentCatalog::default_futures().with_limits(10, max_qty))
    }

    fn fill(account: &str, fill_id: &str, side: &str, qty: i64) -> String {
        format!(
            r#"{{"type":"fill","account":"{account}","order_id":"o","fill_id":"{fill_id}","instrument":"ESZ6","side":"{side}","price":"6850","qty":{qty}}}"#
        )
    }

    fn valid(catalog: &InstrumentCatalog, source: &str, seq: u64, json: &str) -> ValidEvent {
        let mut raw = RawEvent::decode(json.as_bytes()).unwrap();
        raw.event_id = Some(EventId { source: source.into(), seq }.to_string());
        raw.validate(catalog, 1_000, &mut || unreachable!()).unwrap()
    }

    #[test]
    fn an_overflowing_fill_is_refused_whole_and_the_next_one_applies() {
        let catalog = catalog_with(i64::MAX);
        let mut engine = Engine::new(catalog.clone());
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        let big = valid(&catalog, "f", 1, &fill("ACC1", "f1", "buy", i64::MAX));
        assert_eq!(engine.apply(&big, &mut out, &mut changes), Ok(Outcome::Applied));
        let (out_before, changes_before) = (out.clone(), changes.clone());
        let state_before = engine.current_state();
        let again = valid(&catalog, "f", 2, &fill("ACC1", "f2", "buy", i64::MAX));
        let err = engine.apply(&again, &mut out, &mut changes).unwrap_err();
        assert_eq!(err.field, "qty");
        assert!(err.reason.contains("net quantity"), "{err}");
        assert_eq!((out.clone(), changes.clone()), (out_before, changes_before), "nothing published or stored");
        assert_eq!(engine.current_state(), state_before, "nothing changed, not even the fill seq");
        // The refused event's id is not spent: the next normal event applies with the right values.
        let normal = valid(&catalog, "f", 2, &fill("ACC1", "f2", "sell", 1));
        assert_eq!(engine.apply(&normal, &mut out, &mut changes), Ok(Outcome::Applied));
        let Update::Fill(report) = &out.last().unwrap().update else { panic!("fill expected") };
        assert_eq!((report.seq, report.position.net_qty), (2, i64::MAX - 1));
    }

    #[test]
    fn an_overflowing_trade_is_refused_whole() {
        let catalog = catalog_with(i64::MAX);
        let mut engine = Engine::new(catalog.clone());
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        let trade = |seq, qty: i64| {
            let json =
                format!(r#"{{"type":"trade","instrument":"ESZ6","price":"6850","qty":{qty},"aggressor":"buy"}}"#);
            valid(&catalog, "t", seq, &json)
        };
        engine.apply(&trade(1, i64::MAX), &mut out, &mut changes).unwrap();
        let before = engine.current_state();
        let err = engine.apply(&trade(2, i64::MAX), &mut out, &mut changes).unwrap_err();
        assert_eq!(err.field, "qty");
        assert_eq!(engine.current_state(), before);
        assert_eq!(changes.trades.len(), 1, "the refused print is not stored");
    }

    #[test]
    fn a_quote_whose_marks_overflow_is_refused_whole() {
        // A band as wide as the hard limit, and a position as large as i64 allows.
        let catalog = Arc::new(InstrumentCatalog::new(
            InstrumentCatalog::default_futures().with_limits(u32::MAX, i64::MAX).iter().cloned(),
        ));
        let mut engine = Engine::new(catalog.clone());
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        engine.apply(&valid(&catalog, "f", 1, &fill("ACC1", "f1", "buy", i64::MAX)), &mut out, &mut changes).unwrap();
        let before = engine.current_state();
        let quote =
            r#"{"type":"quote","instrument":"ESZ6","bid":"999999999","bid_qty":1,"ask":"999999999","ask_qty":1}"#;
        let err = engine.apply(&valid(&catalog, "q", 1, quote), &mut out, &mut changes).unwrap_err();
        assert_eq!(err.field, "bid");
        assert!(err.reason.contains("unrealized P&L of account ACC1"), "{err}");
        assert_eq!(engine.current_state(), before, "neither the book nor the position moved");
    }

    #[test]
    fn fill_ids_are_unique_per_account_not_across_accounts() {
        let mut engine = engine();
        let (mut out, mut changes) = (Vec::new(), Changes::default());
        let catalog = InstrumentCatalog::default_futures();
        // Someone who guesses ACC2's next fill id and sends it first under ACC1 ...
        let forged = valid(&catalog, "x", 1, &fill("ACC1", "F-100", "buy", 1));
        assert_eq!(engine.apply(&forged, &mut out, &mut changes), Ok(Outcome::Applied));
        // ... no longer suppresses ACC2's real fill.
        let real = valid(&catalog, "y", 1, &fill("ACC2", "F-100", "buy", 3));
        assert_eq!(engine.apply(&real, &mut out, &mut changes), Ok(Outcome::Applied));
        assert_eq!(changes.positions[&("ACC2".to_owned(), "ESZ6".to_owned())].net_qty, 3);
        // The same fill again under another event id is still one fill...
        let replayed = valid(&catalog, "z", 1, &fill("ACC2", "F-100", "buy", 3));
        assert_eq!(engine.apply(&replayed, &mut out, &mut changes), Ok(Outcome::Duplicate));
        // ...and another fill under a used id is refused, not taken for a duplicate.
        let conflicting = valid(&catalog, "z", 2, &fill("ACC2", "F-100", "sell", 4));
        let err = engine.apply(&conflicting, &mut out, &mut changes).unwrap_err();
        assert_eq!(err.field, "fill_id");
        assert!(err.reason.contains("already applied as another fill (buy 3 at 6850)"), "{err}");
        assert_eq!(changes.positions[&("ACC2".to_owned(), "ESZ6".to_owned())].net_qty, 3);
    }

    mod fuzz {
        use proptest::prelude::*;
        use rust_decimal::Decimal;

        use super::*;

        proptest! {
            // Extreme but valid events through the whole engine: never a panic, and each event
            // is either applied or refused with nothing changed.
            #[test]
            fn extreme_events_are_applied_or_refused_whole(
                events in prop::collection::vec(
                    (0u8..3, any::<bool>(), 1i64..=i64::MAX, 1u32..=4_000_000_000, prop::sample::select(vec!["A", "B"])),
                    1..40,
                ),
            ) {
                let catalog = Arc::new(InstrumentCatalog::default_futures().with_limits(u32::MAX, i64::MAX));
                let mut engine = Engine::new(catalog.clone());
                for (seq, (kind, buy, qty, ticks, account)) in events.into_iter().enumerate() {
                    let price = (Decimal::from(ticks) * Decimal::new(25, 2)).min(catalog.get("ESZ6").unwrap().max_price);
                    let side = if buy { "buy" } else { "sell" };
                    let json = match kind {
                        0 => format!(r#"{{"type":"quote","instrument":"ESZ6","bid":"{price}","bid_qty":{qty},"ask":"{price}","ask_qty":1}}"#),
                        1 => format!(r#"{{"type":"trade","instrument":"ESZ6","price":"{price}","qty":{qty},"aggressor":"{side}"}}"#),
                        _ => format!(r#"{{"type":"fill","account":"{account}","order_id":"o","fill_id":"f{seq}","instrument":"ESZ6","side":"{side}","price":"{price}","qty":{qty}}}"#),
                    };
                    let event = valid(&catalog, "p", seq as u64 + 1, &json);
                    let before = engine.current_state();
                    let (mut out, mut changes) = (Vec::new(), Changes::default());
                    match engine.apply(&event, &mut out, &mut changes) {
                        Ok(_) => {}
                        Err(e) => {
                            prop_assert!(!e.field.is_empty() && e.reason.contains("overflow"));
                            prop_assert!(out.is_empty() && changes.is_empty());
                            prop_assert_eq!(engine.current_state(), before);
                        }
                    }
                }
            }
        }
    }
}
