//! The queries, written once and compiled for each database backend by `backend_queries!`:
//! SQLite (embedded default) and PostgreSQL (distributed mode) run the same diesel code.

/// `INSERT row ... ON CONFLICT (conflict) DO UPDATE SET row WHERE stored.order < new.order`:
/// a stored row is only ever replaced by a newer one. Expanded inside `backend_queries!`,
/// where `forward_only` and `excluded` are in scope.
macro_rules! upsert_forward_only {
    ($conn:expr, $table:ident, $conflict:expr, $row:expr, $order:ident) => {
        forward_only(
            diesel::insert_into($table::table).values($row).on_conflict($conflict).do_update().set($row),
            $table::$order.lt(excluded($table::$order)),
        )
        .execute($conn)
    };
}

/// Deletes the rows of one `series` of a bucketed `table` whose bucket starts before `cutoff`,
/// a slice of time per statement and `PRUNE_BATCHES` statements at the most; the rows deleted.
/// Expanded inside a `backend_queries!` function that returns `Result<_, StoreError>`.
macro_rules! prune_series {
    ($conn:expr, $table:ident, $series:expr, $cutoff:expr) => {{
        let mut deleted = 0;
        for _ in 0..super::PRUNE_BATCHES {
            let oldest: Option<i64> = $table::table
                .filter($series)
                .filter($table::start_ts.lt($cutoff))
                .select(diesel::dsl::min($table::start_ts))
                .first($conn)?;
            let Some(oldest) = oldest else { break };
            let bound = $cutoff.min(oldest.saturating_add(super::PRUNE_SLICE));
            deleted +=
                diesel::delete($table::table.filter($series).filter($table::start_ts.lt(bound))).execute($conn)?;
        }
        deleted
    }};
}

/// Generates a module of query functions for one connection type.
macro_rules! backend_queries {
    ($module:ident, $conn:ty, $insert_new:path, $snapshot:path) => {
        pub mod $module {
            use std::collections::HashMap;

            use diesel::prelude::*;
            use diesel::upsert::excluded;

            use crate::domain::{
                Candle, Changes, EngineSnapshot, FillTerms, InstrumentBook, InstrumentCatalog, InstrumentSpec, Interval,
            };
            use crate::store::StoreError;
            use crate::store::models::*;
            use crate::store::schema::*;

            /// `ON CONFLICT DO UPDATE ... WHERE predicate`: the update happens only if it holds.
            fn forward_only<S, P>(statement: S, predicate: P) -> diesel::dsl::Filter<S, P>
            where
                S: diesel::query_dsl::methods::FilterDsl<P>,
            {
                diesel::query_dsl::methods::FilterDsl::filter(statement, predicate)
            }

            /// Writes everything a batch changed in one transaction. Trades and fills already
            /// stored are skipped; candles, states, positions and watermarks are upserted, and
            /// only forward: a row is replaced only by one with a higher seq, so a batch that a
            /// revoked owner commits late (during a Kafka rebalance) never moves state back.
            pub fn write_changes(conn: &mut $conn, changes: &Changes) -> Result<usize, StoreError> {
                conn.transaction::<usize, diesel::result::Error, _>(|conn| {
                    let mut rows = 0;
                    let trade_rows: Vec<TradeRow> = changes.trades.iter().map(TradeRow::from).collect();
                    let fill_rows: Vec<FillRow> = changes.fills.iter().map(FillRow::from).collect();
                    rows += $insert_new(conn, &trade_rows, &fill_rows)?;
                    for candle in changes.candles.values() {
                        let row = CandleRow::from(candle);
                        rows += upsert_forward_only!(
                            conn,
                            candles,
                            (candles::symbol, candles::period, candles::start_ts),
                            &row,
                            seq
                        )?;
                    }
                    for book in changes.instruments.values() {
                        let row = InstrumentStateRow::from(book);
                        rows += upsert_forward_only!(conn, instrument_states, instrument_states::symbol, &row, seq)?;
                    }
                    for position in changes.positions.values() {
                        let row = PositionRow::from(position);
                        rows +=
                            upsert_forward_only!(conn, positions, (positions::account, positions::symbol), &row, seq)?;
                    }
                    for ((source, instrument), seq) in &changes.watermarks {
                        let row = WatermarkRow {
                            source: source.clone(),
                            instrument: instrument.clone(),
                            last_seq: to_i64(*seq),
                        };
                        rows += forward_only(
                            diesel::insert_into(event_watermarks::table)
                                .values(&row)
                                .on_conflict((event_watermarks::source, event_watermarks::instrument))
                                .do_update()
                                .set(event_watermarks::last_seq.eq(excluded(event_watermarks::last_seq))),
                            event_watermarks::last_seq.lt(excluded(event_watermarks::last_seq)),
                        )
                        .execute(conn)?;
                    }
                    Ok(rows)
                })
                .map_err(StoreError::from)
            }

            /// Every stored position, marked to its instrument's mid in `mids`.
            fn marked_positions(
                conn: &mut $conn,
                catalog: &InstrumentCatalog,
                mids: &HashMap<String, Option<rust_decimal::Decimal>>,
            ) -> Result<Vec<crate::domain::PositionState>, StoreError> {
                let mut out = Vec::new();
                for row in positions::table.select(PositionRow::as_select()).load(conn)? {
                    let multiplier = catalog.get(&row.symbol).map(|s| s.multiplier).ok_or_else(|| {
                        StoreError::Corrupt(format!("position in `{}`, which is not in the catalog", row.symbol))
                    })?;
                    let mark = mids.get(&row.symbol).copied().flatten();
                    out.push(row.into_state(mark, multiplier)?);
                }
                Ok(out)
            }

            /// Samples every account's P&L at `now` from the stored positions and mids, and
            /// stores it in its 1 s and 1 min buckets (a later sample of a bucket replaces an
            /// earlier one). Returns the points, to publish.
            pub fn sample_pnl(
                conn: &mut $conn,
                catalog: &InstrumentCatalog,
                now: crate::domain::Micros,
            ) -> Result<Vec<crate::domain::PnlPoint>, StoreError> {
                let mids: HashMap<String, Option<rust_decimal::Decimal>> = instrument_states::table
                    .select(InstrumentStateRow::as_select())
                    .load(conn)?
                    .into_iter()
                    .map(InstrumentBook::try_from)
                    .map(|book| book.map(|b| (b.state.symbol.clone(), b.state.mid)))
                    .collect::<Result<_, _>>()?;
                let positions = marked_positions(conn, catalog, &mids)?;
                let points = crate::domain::pnl::points(&crate::domain::pnl::by_account(&positions), now);
                conn.transaction::<(), diesel::result::Error, _>(|conn| {
                    for point in &points {
                        let row = PnlRow::from(point);
                        upsert_forward_only!(
                            conn,
                            pnl_samples,
                            (pnl_samples::account, pnl_samples::period, pnl_samples::start_ts),
                            &row,
                            sampled_at
                        )?;
                    }
                    Ok(())
                })?;
                Ok(points)
            }

            /// An account's P&L samples of one interval, oldest first: the latest `limit`, within
            /// [`from`, `to`] when given.
            pub fn pnl_history(
                conn: &mut $conn,
                query: &crate::messages::QueryPnl,
            ) -> Result<Vec<crate::domain::PnlPoint>, StoreError> {
                let mut select = pnl_samples::table
                    .filter(pnl_samples::account.eq(&query.account))
                    .filter(pnl_samples::period.eq(query.interval.as_str()))
                    .into_boxed();
                if let Some(from) = query.from {
                    select = select.filter(pnl_samples::start_ts.ge(from));
                }
                if let Some(to) = query.to {
                    select = select.filter(pnl_samples::start_ts.le(to));
                }
                let mut rows = select
                    .order(pnl_samples::start_ts.desc())
                    .limit(query.limit)
                    .select(PnlRow::as_select())
                    .load(conn)?;
                rows.reverse();
                rows.into_iter().map(crate::domain::PnlPoint::try_from).collect()
            }

            /// Records the instrument catalog (reference data for SQL users).
            pub fn sync_instruments(conn: &mut $conn, specs: &[InstrumentSpec]) -> Result<(), StoreError> {
                conn.transaction::<(), diesel::result::Error, _>(|conn| {
                    for spec in specs {
                        let row = InstrumentRow::from(spec);
                        diesel::insert_into(instruments::table)
                            .values(&row)
                            .on_conflict(instruments::symbol)
                            .do_update()
                            .set(&row)
                            .execute(conn)?;
                    }
                    Ok(())
                })
                .map_err(StoreError::from)
            }

            /// Reads back what the engine needs to continue after a restart, as of one moment:
            /// all of it inside one read-only snapshot transaction.
            pub fn load_snapshot(conn: &mut $conn, catalog: &InstrumentCatalog) -> Result<EngineSnapshot, StoreError> {
                $snapshot(conn, |conn| read_engine_state(conn, catalog))
            }

            fn read_engine_state(conn: &mut $conn, catalog: &InstrumentCatalog) -> Result<EngineSnapshot, StoreError> {
                let books = instrument_states::table
                    .select(InstrumentStateRow::as_select())
                    .load(conn)?
                    .into_iter()
                    .map(InstrumentBook::try_from)
                    .collect::<Result<Vec<_>, _>>()?;
                let mids: HashMap<String, _> = books.iter().map(|b| (b.state.symbol.clone(), b.state.mid)).collect();

                let mut latest_candles = Vec::new();
                for spec in catalog.iter() {
                    for interval in Interval::ALL {
                        let row = candles::table
                            .filter(candles::symbol.eq(&spec.symbol))
                            .filter(candles::period.eq(interval.as_str()))
                            .order(candles::start_ts.desc())
                            .select(CandleRow::as_select())
                            .first(conn)
                            .optional()?;
                        if let Some(row) = row {
                            latest_candles.push(Candle::try_from(row)?);
                        }
                    }
                }

                let positions_out = marked_positions(conn, catalog, &mids)?;

                let fill_seqs = fills::table
                    .group_by((fills::account, fills::symbol))
                    .select((fills::account, fills::symbol, diesel::dsl::max(fills::account_seq)))
                    .load::<(String, String, Option<i64>)>(conn)?
                    .into_iter()
                    .map(|(account, symbol, seq)| (account, symbol, to_u64(seq.unwrap_or(0))))
                    .collect::<Vec<_>>();
                let fill_ids = fills::table
                    .select((fills::account, fills::symbol, fills::fill_id, fills::side, fills::price, fills::qty))
                    .load::<(String, String, String, String, String, i64)>(conn)?
                    .into_iter()
                    .map(|(account, symbol, fill_id, side, price, qty)| {
                        let terms = FillTerms { side: side_from(&side)?, price: decimal("price", &price)?, qty };
                        Ok(((account, symbol, fill_id), terms))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let mut last_fills = Vec::new();
                for (account, symbol, seq) in &fill_seqs {
                    let row = fills::table
                        .filter(fills::account.eq(account))
                        .filter(fills::symbol.eq(symbol))
                        .filter(fills::account_seq.eq(to_i64(*seq)))
                        .select(FillReadRow::as_select())
                        .first(conn)
                        .optional()?;
                    if let Some(row) = row {
                        let position = positions_out
                            .iter()
                            .find(|p| p.account == row.account && p.symbol == row.symbol)
                            .cloned()
                            .unwrap_or_else(|| crate::domain::PositionState::flat(&row.account, &row.symbol));
                        last_fills.push(row.into_report(position)?);
                    }
                }
                let watermarks = event_watermarks::table
                    .select(WatermarkRow::as_select())
                    .load(conn)?
                    .into_iter()
                    .map(|w| (w.source, w.instrument, to_u64(w.last_seq)))
                    .collect();
                Ok(EngineSnapshot {
                    books,
                    candles: latest_candles,
                    positions: positions_out,
                    fill_seqs,
                    last_fills,
                    fill_ids,
                    watermarks,
                })
            }

            /// The candles of a symbol, oldest first: the latest `limit`, or the first `limit`
            /// starting at or after `since`.
            pub fn recent_candles(
                conn: &mut $conn,
                symbol: &str,
                interval: Interval,
                since: Option<crate::domain::Micros>,
                limit: i64,
            ) -> Result<Vec<Candle>, StoreError> {
                let series =
                    candles::table.filter(candles::symbol.eq(symbol)).filter(candles::period.eq(interval.as_str()));
                let rows = match since {
                    Some(since) => series
                        .filter(candles::start_ts.ge(since))
                        .order(candles::start_ts.asc())
                        .limit(limit)
                        .select(CandleRow::as_select())
                        .load(conn)?,
                    None => {
                        let mut rows = series
                            .order(candles::start_ts.desc())
                            .limit(limit)
                            .select(CandleRow::as_select())
                            .load(conn)?;
                        rows.reverse();
                        rows
                    }
                };
                rows.into_iter().map(Candle::try_from).collect()
            }

            /// Deletes the rows older than `cutoff` of one table, the oldest first, a bounded
            /// slice of time per statement (each its own short transaction) and at most
            /// `PRUNE_BATCHES` statements per call: the next call goes on.
            pub fn prune(
                conn: &mut $conn,
                prune: &crate::messages::Prune,
            ) -> Result<crate::messages::Pruned, StoreError> {
                let mut pruned = crate::messages::Pruned::default();
                if let Some(age) = prune.trades {
                    let cutoff = prune.now.saturating_sub(age);
                    for _ in 0..super::PRUNE_BATCHES {
                        let oldest: Option<i64> = trades::table
                            .filter(trades::ts.lt(cutoff))
                            .select(diesel::dsl::min(trades::ts))
                            .first(conn)?;
                        let Some(oldest) = oldest else { break };
                        let bound = cutoff.min(oldest.saturating_add(super::PRUNE_SLICE));
                        pruned.trades += diesel::delete(trades::table.filter(trades::ts.lt(bound))).execute(conn)?;
                    }
                }
                if let Some(age) = prune.pnl_1s {
                    let cutoff = prune.now.saturating_sub(age);
                    let series = pnl_samples::period.eq(Interval::OneSecond.as_str());
                    pruned.pnl_1s += prune_series!(conn, pnl_samples, series, cutoff);
                }
                for (interval, age, count) in [
                    (Interval::OneSecond, prune.candles_1s, &mut pruned.candles_1s),
                    (Interval::OneMinute, prune.candles_1m, &mut pruned.candles_1m),
                ] {
                    let Some(age) = age else { continue };
                    let cutoff = prune.now.saturating_sub(age);
                    let series = candles::period.eq(interval.as_str());
                    *count += prune_series!(conn, candles, series, cutoff);
                }
                Ok(pruned)
            }

            /// One account's fills (see [`crate::messages::QueryFills`]).
            pub fn fills_page(
                conn: &mut $conn,
                query: &crate::messages::QueryFills,
            ) -> Result<Vec<crate::store::StoredFill>, StoreError> {
                let mut select = fills::table.filter(fills::account.eq(&query.account)).into_boxed();
                if let Some(symbol) = &query.symbol {
                    select = select.filter(fills::symbol.eq(symbol));
                }
                if let Some(from) = query.from {
                    select = select.filter(fills::ts.ge(from));
                }
                if let Some(to) = query.to {
                    select = select.filter(fills::ts.le(to));
                }
                select = match query.since_seq {
                    Some(seq) => select.filter(fills::account_seq.gt(to_i64(seq))).order(fills::account_seq.asc()),
                    None => {
                        if let Some(c) = &query.cursor {
                            let seq = to_i64(c.seq);
                            select = select.filter(
                                fills::ts.lt(c.ts).or(fills::ts.eq(c.ts).and(fills::symbol.lt(c.symbol.clone()))).or(
                                    fills::ts
                                        .eq(c.ts)
                                        .and(fills::symbol.eq(c.symbol.clone()))
                                        .and(fills::account_seq.lt(seq)),
                                ),
                            );
                        }
                        select.order((fills::ts.desc(), fills::symbol.desc(), fills::account_seq.desc()))
                    }
                };
                select
                    .limit(query.limit)
                    .select((FillReadRow::as_select(), fills::event_id))
                    .load::<(FillReadRow, String)>(conn)?
                    .into_iter()
                    .map(|(row, event_id)| row.into_stored(event_id))
                    .collect()
            }

            /// The latest prints of a symbol, newest first.
            pub fn recent_trades(
                conn: &mut $conn,
                query: &crate::messages::QueryTrades,
            ) -> Result<Vec<crate::store::StoredTrade>, StoreError> {
                let mut select = trades::table.filter(trades::symbol.eq(&query.symbol)).into_boxed();
                match &query.before {
                    None => {}
                    Some(crate::messages::TradeCursor { ts, event_id: None }) => {
                        select = select.filter(trades::ts.lt(*ts));
                    }
                    Some(crate::messages::TradeCursor { ts, event_id: Some(id) }) => {
                        // `ts <=` first: a range on the (symbol, ts) index; the rest breaks ties.
                        select = select
                            .filter(trades::ts.le(*ts))
                            .filter(trades::ts.lt(*ts).or(trades::event_id.lt(id.clone())));
                    }
                }
                select
                    .order((trades::ts.desc(), trades::event_id.desc()))
                    .limit(query.limit)
                    .select((
                        trades::symbol,
                        trades::event_id,
                        trades::price,
                        trades::qty,
                        trades::aggressor,
                        trades::ts,
                    ))
                    .load::<(String, String, String, i64, String, i64)>(conn)?
                    .into_iter()
                    .map(|(symbol, event_id, price, qty, aggressor, ts)| {
                        Ok(crate::store::StoredTrade {
                            symbol,
                            event_id,
                            price: decimal("price", &price)?,
                            qty,
                            aggressor: side_from(&aggressor)?,
                            ts,
                        })
                    })
                    .collect()
            }

            /// Row counts per table, for operators and tests.
            pub fn table_counts(conn: &mut $conn) -> Result<Vec<(&'static str, i64)>, StoreError> {
                Ok(vec![
                    ("trades", trades::table.count().get_result(conn)?),
                    ("fills", fills::table.count().get_result(conn)?),
                    ("candles", candles::table.count().get_result(conn)?),
                    ("instrument_states", instrument_states::table.count().get_result(conn)?),
                    ("positions", positions::table.count().get_result(conn)?),
                    ("event_watermarks", event_watermarks::table.count().get_result(conn)?),
                ])
            }
        }
    };
}

/// Statements one prune runs at most per table (one: the writer takes the processor's writes
/// between two prunes), and the slice of time (Unix micros) each deletes: at 5,000 trades/s a
/// slice is some 50,000 rows, a short pause for the writer.
const PRUNE_BATCHES: usize = 1;
const PRUNE_SLICE: i64 = 10_000_000;

/// Rows per multi-row INSERT: well under PostgreSQL's limit on bound parameters.
const INSERT_CHUNK: usize = 1_000;

/// Inserts each of `batches` (rows, or slices of rows) into `table`, skipping the rows already
/// stored; the rows inserted.
macro_rules! insert_new {
    ($conn:expr, $table:ident, $batches:expr) => {{
        use diesel::RunQueryDsl as _;
        let mut rows = 0;
        for batch in $batches {
            rows += diesel::insert_into(schema::$table::table).values(batch).on_conflict_do_nothing().execute($conn)?;
        }
        rows
    }};
}

/// Inserts trades and fills not stored yet. PostgreSQL: multi-row statements (one round trip per
/// 1,000 rows instead of one per row: the processor's write time at 10k events/s, see
/// BENCHMARKS.md). SQLite runs in-process, where a row per statement costs microseconds (and
/// diesel has no multi-row `ON CONFLICT` insert for it).
fn insert_new_postgres(
    conn: &mut diesel::pg::PgConnection,
    trades: &[TradeRow<'_>],
    fills: &[FillRow<'_>],
) -> diesel::QueryResult<usize> {
    Ok(insert_new!(conn, trades, trades.chunks(INSERT_CHUNK)) + insert_new!(conn, fills, fills.chunks(INSERT_CHUNK)))
}

fn insert_new_sqlite(
    conn: &mut diesel::sqlite::SqliteConnection,
    trades: &[TradeRow<'_>],
    fills: &[FillRow<'_>],
) -> diesel::QueryResult<usize> {
    Ok(insert_new!(conn, trades, trades) + insert_new!(conn, fills, fills))
}

/// Runs `read` in one read-only REPEATABLE READ transaction: every statement sees the same
/// committed state. Why: a processor reloads while another may still be writing (a partition's
/// previous owner finishing its batches in flight). Statement by statement it could read the
/// fill seqs before one of those transactions and the watermarks after it: the events of that
/// transaction would then count as duplicates while its fills' seqs were handed out again, and
/// the next fills would collide with stored ones and be lost.
fn snapshot_postgres<T>(
    conn: &mut diesel::pg::PgConnection,
    read: impl FnOnce(&mut diesel::pg::PgConnection) -> Result<T, crate::store::StoreError>,
) -> Result<T, crate::store::StoreError> {
    conn.build_transaction().repeatable_read().read_only().run(read)
}

/// The same for SQLite: its reads inside one transaction see one snapshot (WAL) or hold off the
/// writer (rollback journal).
fn snapshot_sqlite<T>(
    conn: &mut diesel::sqlite::SqliteConnection,
    read: impl FnOnce(&mut diesel::sqlite::SqliteConnection) -> Result<T, crate::store::StoreError>,
) -> Result<T, crate::store::StoreError> {
    use diesel::Connection as _;
    conn.transaction(read)
}

use super::models::{FillRow, TradeRow};
use super::schema;

backend_queries!(sqlite, diesel::sqlite::SqliteConnection, super::insert_new_sqlite, super::snapshot_sqlite);
backend_queries!(postgres, diesel::pg::PgConnection, super::insert_new_postgres, super::snapshot_postgres);

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use diesel::{Connection as _, RunQueryDsl as _};
    use rust_decimal::Decimal;

    use crate::domain::{Candle, Changes, InstrumentBook, InstrumentCatalog, Interval, PositionState};
    use crate::store::{DbConn, DbPool};
    use crate::with_conn;

    static NEXT: AtomicU32 = AtomicU32::new(0);

    fn price(text: &str) -> Decimal {
        text.parse().expect("a decimal")
    }

    /// What one batch wrote for ESZ6 and ACC1, every row at `seq`, its values derived from it.
    fn changes_at(seq: u64) -> Changes {
        let n = seq as i64;
        let mut book = InstrumentBook::new("ESZ6");
        book.state.seq = seq;
        book.state.last = Some(price("6850") + Decimal::from(n));
        book.state.volume = 10 * n;
        book.state.trades = seq;
        book.state.updated_at = 1_000 * n;
        book.notional = price("68500") * Decimal::from(n);
        let start = 1_800_000_000_000_000;
        let candle = Candle {
            symbol: "ESZ6".into(),
            interval: Interval::OneMinute,
            start,
            open: price("6850"),
            high: price("6850") + Decimal::from(n),
            low: price("6850"),
            close: price("6850") + Decimal::from(n),
            volume: 10 * n,
            trades: seq,
            seq,
            updated_at: start + n,
        };
        let mut position = PositionState::flat("ACC1", "ESZ6");
        position.seq = seq;
        position.net_qty = n;
        position.avg_price = price("6850.25");
        position.realized_pnl = Decimal::from(100 * n);
        position.updated_at = 1_000 * n;
        let mut changes = Changes::default();
        changes.candles.insert(("ESZ6".into(), Interval::OneMinute, start), candle);
        changes.instruments.insert("ESZ6".into(), book);
        changes.positions.insert(("ACC1".into(), "ESZ6".into()), position);
        changes.watermarks.insert(("feed-a".into(), "ESZ6".into()), seq);
        changes
    }

    /// Writes seq 5 then seq 3 (a revoked owner's late batch): every row keeps seq 5's values,
    /// and seq 7 afterwards still moves them forward.
    fn older_writes_never_move_state_back(pool: &DbPool) {
        let catalog = InstrumentCatalog::default_futures();
        let write = |changes: &Changes| {
            let mut conn: DbConn = pool.get().expect("a connection");
            with_conn!(&mut conn, queries::write_changes(changes)).expect("the write commits");
        };
        let stored = || {
            let mut conn = pool.get().expect("a connection");
            with_conn!(&mut conn, queries::load_snapshot(&catalog)).expect("the snapshot loads")
        };
        let expect = |seq: u64| {
            let changes = changes_at(seq);
            let snapshot = stored();
            assert_eq!(snapshot.books.len(), 1);
            let book = &snapshot.books[0];
            let want = &changes.instruments["ESZ6"];
            assert_eq!(
                (book.state.seq, book.state.last, book.state.volume, book.state.trades, book.notional),
                (seq, want.state.last, want.state.volume, want.state.trades, want.notional),
                "instrument state"
            );
            let candles: Vec<&Candle> = snapshot.candles.iter().filter(|c| c.interval == Interval::OneMinute).collect();
            assert_eq!(candles, changes.candles.values().collect::<Vec<_>>(), "candle");
            assert_eq!(snapshot.positions.len(), 1);
            let position = &snapshot.positions[0];
            let want = &changes.positions[&("ACC1".to_owned(), "ESZ6".to_owned())];
            assert_eq!(
                (position.seq, position.net_qty, position.avg_price, position.realized_pnl, position.updated_at),
                (seq, want.net_qty, want.avg_price, want.realized_pnl, want.updated_at),
                "position"
            );
            assert_eq!(snapshot.watermarks, vec![("feed-a".to_owned(), "ESZ6".to_owned(), seq)], "watermark");
        };
        write(&changes_at(5));
        expect(5);
        write(&changes_at(3));
        expect(5);
        write(&changes_at(5));
        expect(5);
        write(&changes_at(7));
        expect(7);
    }

    #[test]
    fn sqlite_upserts_only_move_forward() {
        let path = std::env::temp_dir().join(format!(
            "ttpulse-forward-{}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let pool = DbPool::open_sqlite(&path, 2).expect("SQLite opens");
        older_writes_never_move_state_back(&pool);
        drop(pool);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// A fresh database on the test PostgreSQL (`make deps` starts it), dropped at the end.
    struct PgDatabase {
        admin: diesel::pg::PgConnection,
        name: String,
    }

    impl Drop for PgDatabase {
        fn drop(&mut self) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut self.admin);
        }
    }

    #[test]
    fn postgres_upserts_only_move_forward() {
        const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
        let Ok(mut admin) = diesel::pg::PgConnection::establish(ADMIN) else {
            eprintln!("skipped: no PostgreSQL at {ADMIN} (`make deps` starts it)");
            return;
        };
        let name = format!("ttpulse_forward_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("CREATE DATABASE");
        let database = PgDatabase { admin, name };
        let pool = DbPool::open_postgres(&format!("postgres://postgres@127.0.0.1:5432/{}", database.name), 2)
            .expect("PostgreSQL opens");
        older_writes_never_move_state_back(&pool);
        drop(pool);
        drop(database);
    }
}
