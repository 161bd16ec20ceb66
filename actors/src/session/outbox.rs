//! A session's bounded outbound queue, shared between the hub (which pushes) and the session
//! actor (which drains into the WebSocket).
//!
//! - Control frames (snapshots) go first, in order.
//! - Account lane (fills): FIFO, never conflated or dropped; if it overflows, the session is
//!   closed with [`CLOSE_ACCOUNT_OVERFLOW`] and the client resubscribes for a fresh snapshot.
//!   A snapshot drops only the queued fills its lanes' `fill_seq` covers (the client refills
//!   what it lacks), so that after a snapshot only higher seqs follow.
//! - Market lane (instrument states, candles, positions, prints): FIFO while the session keeps
//!   up. A session falls behind when its lane has not been empty for `conflate_after`, or holds
//!   more than `market_capacity` frames: the lane is then conflated to the latest frame per key
//!   (each carries the full state of its key) and stays *merging* until it is empty again: a
//!   newer frame of a queued key replaces the queued one in its place in the queue, so the
//!   newest state goes out as early as the old one would have, and the lane holds at most one
//!   frame per subscribed key. A session that empties its lane within `conflate_after` sees
//!   every update; a slower one sees seq jumps on market keys, never stale values. While the
//!   session holds its own writes ([`Outbox::hold`]), the wait does not count.
//! - Per key, an update at or below the seq already queued or sent is skipped, which makes a
//!   snapshot and the stream after it join with no gap and no duplicate.
//! - A maximum rate (a subscribe's `max_rate`) is applied before the outbox, once per rate by
//!   the hub (`Resampler`): what is pushed here is already resampled.
//! - A session that makes no progress (a non-empty queue it does not drain) for longer than
//!   `max_behind` is closed with [`CLOSE_TOO_SLOW`]; the hub checks on every push and sweeps
//!   all sessions every second.

use std::collections::{HashMap, VecDeque};

use hashbrown::hash_map::EntryRef;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use std::collections::HashSet;

use crate::domain::{Lane, Micros, Published, TraceContext, Update};

/// Close code: the account lane overflowed (application range 4000-4999).
pub const CLOSE_ACCOUNT_OVERFLOW: u16 = 4008;
/// Close code: the session stayed behind too long.
pub const CLOSE_TOO_SLOW: u16 = 4009;
/// Close code: the server could not serve the session (WebSocket's internal error); the client
/// reconnects and subscribes again.
pub const CLOSE_INTERNAL_ERROR: u16 = 1011;

/// An update serialized once, shared by every session that sends it.
#[derive(Debug)]
pub struct Frame {
    pub key: String,
    pub seq: u64,
    pub lane: Lane,
    pub ingest_ts: Micros,
    /// When a cache took the update (0: unknown), for the last hop's latency.
    pub cached_ts: Micros,
    /// The trace of a sampled update: the first sessions that write it record a span under it.
    pub trace: Option<TraceContext>,
    /// Sessions that recorded their write of it (see [`Frame::traced_write`]).
    traced_writes: AtomicU32,
    /// A state of its key (instrument, candle, position, P&L), which a newer one replaces: a
    /// session's maximum rate may resample it. Prints and fills are events, never resampled.
    pub resampled: bool,
    pub text: ByteString,
}

/// Sessions whose write of one sampled update is recorded as a span: enough to see the fan-out's
/// spread, while an update to 10,000 sessions does not cost 10,000 spans.
pub const TRACED_WRITES_PER_UPDATE: u32 = 16;

impl Frame {
    pub fn new(update: &Published) -> Arc<Self> {
        Arc::new(Self {
            key: update.key.clone(),
            seq: update.seq(),
            lane: update.update.lane(),
            ingest_ts: update.ingest_ts,
            cached_ts: update.hops.cached,
            trace: update.trace.clone(),
            traced_writes: AtomicU32::new(0),
            resampled: !matches!(update.update, Update::Trade(_) | Update::Fill(_)),
            text: ByteString::from(update.to_json()),
        })
    }

    /// The trace to record this session's write under: the update's, for the first
    /// [`TRACED_WRITES_PER_UPDATE`] sessions that write it.
    pub fn traced_write(&self) -> Option<&TraceContext> {
        let trace = self.trace.as_ref()?;
        (self.traced_writes.fetch_add(1, Ordering::Relaxed) < TRACED_WRITES_PER_UPDATE).then_some(trace)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub account_capacity: usize,
    pub market_capacity: usize,
    /// How long the market lane may stay non-empty before it is conflated (a session that
    /// cannot take the feed then gets the latest state of each key, not a growing backlog).
    pub conflate_after: Duration,
    pub max_behind: Duration,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            account_capacity: 4096,
            market_capacity: 1024,
            conflate_after: Duration::from_millis(100),
            max_behind: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
    /// Set only on the value returned by the push that closed the session (not on later ones),
    /// with what the close discarded from each lane.
    pub just_closed: bool,
    pub dropped_market: usize,
    pub dropped_account: usize,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; wake the session (it was not already woken).
    Wake,
    /// Queued; the session is already due to drain.
    Queued,
    /// Queued, and the market lane was conflated: this many older frames were dropped in
    /// favour of newer frames of the same keys.
    Conflated(usize),
    /// Already queued or sent at this seq or later.
    Stale,
    /// The session is (now) closed and takes nothing more.
    Closed(CloseReason),
}

/// Frames taken out for sending, and whether to close after them.
#[derive(Debug, Default)]
pub struct Drained {
    pub control: Vec<ByteString>,
    pub updates: Vec<Arc<Frame>>,
    pub close: Option<CloseReason>,
    /// More is queued than was taken: drain again.
    pub more: bool,
}

/// What the outbox knows of one key.
struct KeyState {
    /// The newest seq queued or sent.
    seq: u64,
    /// Where its newest market frame was queued (see [`MarketLane::taken`]); while merging,
    /// the lane's only frame of the key, which a newer one replaces.
    queued_at: u64,
}

/// The market lane and what it needs to conflate and merge.
#[derive(Default)]
struct MarketLane {
    queue: VecDeque<Arc<Frame>>,
    /// How many frames were ever taken out of the lane: the position of its front, so that a
    /// key's `queued_at` stays valid while frames before it are taken.
    taken: u64,
    /// Since when the lane has not been empty.
    waiting_since: Option<Instant>,
    /// The lane holds one frame per key, and a newer frame replaces the queued one.
    merging: bool,
    /// The session itself holds its writes (recovering fills): the lane's wait is not the
    /// client's, so it does not count towards `conflate_after`.
    held: bool,
}

/// What queueing one frame did, before the session is marked as due.
enum Step {
    /// Already queued or sent at this seq or later: skipped.
    Stale,
    /// Queued; this many queued market frames were replaced or conflated away.
    Queued { conflated: usize },
}

/// What queueing a market frame did.
enum Queued {
    /// It replaced the key's waiting frame in its place (merging).
    Replaced,
    /// It went to the back of the lane.
    Appended,
    /// It went to the back of the lane, which has now fallen behind: conflate it.
    Behind,
}

impl MarketLane {
    /// Queues a frame whose key's seq `push` has just recorded in `state`.
    fn queue(&mut self, frame: Arc<Frame>, state: &mut KeyState, limits: &OutboxLimits, now: Instant) -> Queued {
        if self.merging
            && let Some(offset) = state.queued_at.checked_sub(self.taken)
            && let Some(queued) = self.queue.get_mut(offset as usize)
            && queued.key == frame.key
        {
            *queued = frame;
            return Queued::Replaced;
        }
        state.queued_at = self.taken + self.queue.len() as u64;
        self.queue.push_back(frame);
        let waiting_since = *self.waiting_since.get_or_insert(now);
        let behind = self.queue.len() > limits.market_capacity
            || (!self.held && now.duration_since(waiting_since) > limits.conflate_after);
        if self.merging || !behind {
            return Queued::Appended;
        }
        self.merging = true;
        Queued::Behind
    }

    /// Empties the lane's bookkeeping once the lane is empty.
    fn emptied(&mut self) {
        if self.queue.is_empty() {
            self.waiting_since = None;
            self.merging = false;
        }
    }
}

#[derive(Default)]
struct Inner {
    control: VecDeque<ByteString>,
    account: VecDeque<Arc<Frame>>,
    market: MarketLane,
    /// hashbrown's map for `entry_ref` (a key is looked up once per push and copied only when
    /// new) and its fast hasher: keys are the server's own names, not a client's.
    keys: hashbrown::HashMap<String, KeyState>,
    wake_pending: bool,
    behind_since: Option<Instant>,
    closed: Option<CloseReason>,
}

impl Inner {
    fn is_empty(&self) -> bool {
        self.control.is_empty() && self.account.is_empty() && self.market.queue.is_empty()
    }

    fn len(&self) -> usize {
        self.control.len() + self.account.len() + self.market.queue.len()
    }

    /// Records where each queued market frame is, after frames were removed from the middle of
    /// the lane (a snapshot, an unsubscribe or a conflation).
    fn reindex_market(&mut self) {
        for (offset, frame) in self.market.queue.iter().enumerate() {
            if let Some(state) = self.keys.get_mut(&frame.key) {
                state.queued_at = self.market.taken + offset as u64;
            }
        }
    }
}

pub struct Outbox {
    inner: Mutex<Inner>,
    limits: OutboxLimits,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Arc<Self> {
        Arc::new(Self { inner: Mutex::new(Inner::default()), limits })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn close(inner: &mut Inner, code: u16, reason: &str) -> CloseReason {
        let stored =
            CloseReason { code, reason: reason.to_owned(), just_closed: false, dropped_market: 0, dropped_account: 0 };
        let reason = CloseReason {
            just_closed: true,
            dropped_market: inner.market.queue.len(),
            dropped_account: inner.account.len(),
            ..stored.clone()
        };
        inner.closed = Some(stored);
        inner.control.clear();
        inner.account.clear();
        inner.market.queue.clear();
        reason
    }

    fn mark_queued(&self, inner: &mut Inner, now: Instant) -> Result<bool, CloseReason> {
        match inner.behind_since {
            None => inner.behind_since = Some(now),
            Some(since) if now.duration_since(since) > self.limits.max_behind => {
                let seconds = self.limits.max_behind.as_secs();
                return Err(Self::close(
                    inner,
                    CLOSE_TOO_SLOW,
                    &format!("too slow: no progress for more than {seconds} s"),
                ));
            }
            Some(_) => {}
        }
        let wake = !inner.wake_pending;
        inner.wake_pending = true;
        Ok(wake)
    }

    /// Queues a snapshot (already serialized) and records the seq of each key it holds.
    /// Queued updates it covers are dropped: market states it supersedes, and fills at or below
    /// its lanes' `fill_seq`, so that after a snapshot a client gets only higher seqs (the
    /// snapshot's `fill_seq` tells it to refill those fills if it lacks them).
    pub fn push_snapshot(&self, text: ByteString, key_seqs: &[(String, u64)], now: Instant) -> Pushed {
        let mut inner = self.lock();
        if let Some(reason) = &inner.closed {
            return Pushed::Closed(reason.clone());
        }
        let covered: HashMap<&str, u64> = key_seqs.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        for (key, seq) in key_seqs {
            let state = inner.keys.entry(key.clone()).or_insert(KeyState { seq: 0, queued_at: 0 });
            state.seq = state.seq.max(*seq);
        }
        let queued = inner.market.queue.len();
        let later = |f: &Arc<Frame>| covered.get(f.key.as_str()).is_none_or(|&seq| f.seq > seq);
        inner.market.queue.retain(later);
        if inner.market.queue.len() < queued {
            inner.reindex_market();
            inner.market.emptied();
        }
        inner.account.retain(later);
        inner.control.push_back(text);
        match self.mark_queued(&mut inner, now) {
            Ok(true) => Pushed::Wake,
            Ok(false) => Pushed::Queued,
            Err(reason) => Pushed::Closed(reason),
        }
    }

    pub fn push(&self, frame: &Arc<Frame>, now: Instant) -> Pushed {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(reason) = &inner.closed {
            return Pushed::Closed(reason.clone());
        }
        match self.queue_one(inner, frame.clone(), now) {
            Err(reason) => Pushed::Closed(reason),
            Ok(Step::Stale) => Pushed::Stale,
            Ok(Step::Queued { conflated }) => match self.mark_queued(inner, now) {
                Err(reason) => Pushed::Closed(reason),
                Ok(_) if conflated > 0 => Pushed::Conflated(conflated),
                Ok(true) => Pushed::Wake,
                Ok(false) => Pushed::Queued,
            },
        }
    }

    /// Most frames to push at once with [`Outbox::push_many`]: half the market lane (at most
    /// 256), so that one push never fills the lane by itself, and the session, woken after
    /// each, drains while the next is pushed.
    pub fn push_piece(&self) -> usize {
        (self.limits.market_capacity / 2).clamp(1, 256)
    }

    /// Pushes several frames (in order) under one lock, for one wake: what the hub has for this
    /// session from one batch of updates. Answers what the pushes did together (`Wake` if any
    /// needs one, `Stale` if none was queued), and how many queued market frames they conflated.
    pub fn push_many(&self, frames: impl IntoIterator<Item = Arc<Frame>>, now: Instant) -> (Pushed, usize) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(reason) = &inner.closed {
            return (Pushed::Closed(reason.clone()), 0);
        }
        let (mut queued, mut conflated) = (false, 0);
        for frame in frames {
            match self.queue_one(inner, frame, now) {
                Err(reason) => return (Pushed::Closed(reason), conflated),
                Ok(Step::Stale) => {}
                Ok(Step::Queued { conflated: dropped }) => {
                    queued = true;
                    conflated += dropped;
                }
            }
        }
        if !queued {
            return (Pushed::Stale, conflated);
        }
        let pushed = match self.mark_queued(inner, now) {
            Err(reason) => Pushed::Closed(reason),
            Ok(true) => Pushed::Wake,
            Ok(false) => Pushed::Queued,
        };
        (pushed, conflated)
    }

    /// Queues one frame of an open outbox, or skips it as stale; the caller marks the session
    /// as due. Closes the outbox (and answers why) when the account lane overflows.
    fn queue_one(&self, inner: &mut Inner, frame: Arc<Frame>, now: Instant) -> Result<Step, CloseReason> {
        // One look-up of the key per push (the hub's hottest path); the key is copied only the
        // first time the session sees it.
        let state = match inner.keys.entry_ref(frame.key.as_str()) {
            EntryRef::Occupied(known) if frame.seq <= known.get().seq => return Ok(Step::Stale),
            EntryRef::Occupied(known) => {
                let state = known.into_mut();
                state.seq = frame.seq;
                state
            }
            EntryRef::Vacant(new) => new.insert(KeyState { seq: frame.seq, queued_at: 0 }),
        };
        let mut conflated = 0;
        match frame.lane {
            Lane::Market => match inner.market.queue(frame, state, &self.limits, now) {
                Queued::Replaced => conflated = 1,
                Queued::Appended => {}
                Queued::Behind => {
                    conflated = Self::conflate(&mut inner.market.queue);
                    inner.reindex_market();
                }
            },
            Lane::Account => {
                if inner.account.len() >= self.limits.account_capacity {
                    let capacity = self.limits.account_capacity;
                    return Err(Self::close(
                        inner,
                        CLOSE_ACCOUNT_OVERFLOW,
                        &format!("too slow: more than {capacity} account events waiting"),
                    ));
                }
                inner.account.push_back(frame);
            }
        }
        Ok(Step::Queued { conflated })
    }

    /// Keeps only the newest frame of each key, in the order of those newest frames.
    /// Returns how many frames were dropped.
    fn conflate(market: &mut VecDeque<Arc<Frame>>) -> usize {
        let before = market.len();
        let mut seen: HashSet<String> = HashSet::with_capacity(before);
        let mut kept: VecDeque<Arc<Frame>> = VecDeque::with_capacity(before);
        for frame in market.drain(..).rev() {
            if seen.insert(frame.key.clone()) {
                kept.push_front(frame);
            }
        }
        *market = kept;
        before - market.len()
    }

    /// Holds (or releases) the session's own writes: while held, the market lane's wait does
    /// not make it conflate (its capacity still does); on release, its clock starts again.
    pub fn hold(&self, held: bool, now: Instant) {
        let mut inner = self.lock();
        inner.market.held = held;
        if !held && !inner.market.queue.is_empty() {
            inner.market.waiting_since = Some(now);
        }
    }

    /// Forgets the seq of keys that are no longer subscribed, and drops their queued updates.
    pub fn forget(&self, keep: impl Fn(&str) -> bool) {
        let mut inner = self.lock();
        inner.keys.retain(|key, _| keep(key));
        inner.market.queue.retain(|f| keep(&f.key));
        inner.account.retain(|f| keep(&f.key));
        inner.reindex_market();
        inner.market.emptied();
    }

    /// Takes up to `max` frames: control first, then the account lane, then the market lane.
    pub fn drain(&self, max: usize) -> Drained {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut out = Drained { close: inner.closed.clone(), ..Drained::default() };
        while out.control.len() < max {
            let Some(text) = inner.control.pop_front() else { break };
            out.control.push(text);
        }
        while out.control.len() + out.updates.len() < max {
            let Some(frame) = inner.account.pop_front() else { break };
            out.updates.push(frame);
        }
        while out.control.len() + out.updates.len() < max {
            let Some(frame) = inner.market.queue.pop_front() else { break };
            inner.market.taken += 1;
            out.updates.push(frame);
        }
        inner.market.emptied();
        out.more = !inner.is_empty();
        // Progress restarts the clock; an empty queue stops it.
        inner.behind_since = if out.more { Some(Instant::now()) } else { None };
        if !out.more {
            inner.wake_pending = false;
        }
        out
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Closes the session with `code` once what is queued now has been sent (shutdown).
    pub fn close_with(&self, code: u16, reason: &str) {
        let mut inner = self.lock();
        if inner.closed.is_none() {
            inner.closed = Some(CloseReason {
                code,
                reason: reason.to_owned(),
                just_closed: false,
                dropped_market: 0,
                dropped_account: 0,
            });
        }
    }

    /// Closes the session if it made no progress for longer than `max_behind`.
    pub fn check_progress(&self, now: Instant) -> Option<CloseReason> {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return None;
        }
        let since = inner.behind_since?;
        if now.duration_since(since) <= self.limits.max_behind {
            return None;
        }
        let seconds = self.limits.max_behind.as_secs();
        Some(Self::close(&mut inner, CLOSE_TOO_SLOW, &format!("too slow: no progress for more than {seconds} s")))
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn closed(&self) -> Option<CloseReason> {
        self.lock().closed.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{FillReport, InstrumentState, PositionState, Side, Update};

    /// A frame of an instrument's state at `seq` (also the resampler's tests).
    pub(crate) fn inst(symbol: &str, seq: u64) -> Arc<Frame> {
        let mut s = InstrumentState::empty(symbol);
        s.seq = seq;
        Frame::new(&Published::new(Update::Instrument(s), 0))
    }

    fn fill(seq: u64) -> Arc<Frame> {
        fill_of("ACC1", seq)
    }

    fn fill_of(account: &str, seq: u64) -> Arc<Frame> {
        let report = FillReport {
            account: account.into(),
            seq,
            fill_id: format!("f{seq}"),
            order_id: "o".into(),
            symbol: "ESZ6".into(),
            side: Side::Buy,
            price: 1.into(),
            qty: 1,
            ts: 0,
            position: PositionState::flat(account, "ESZ6"),
        };
        Frame::new(&Published::new(Update::Fill(report), 0))
    }

    #[test]
    fn only_the_first_sessions_record_their_write_of_a_sampled_update() {
        assert_eq!(inst("ESZ6", 1).traced_write(), None, "an unsampled update records nothing");
        let mut update = Published::new(Update::Instrument(InstrumentState::empty("ESZ6")), 0);
        update.trace =
            crate::domain::trace_context::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let frame = Frame::new(&update);
        let recorded = (0..10_000).filter(|_| frame.traced_write().is_some()).count();
        assert_eq!(recorded, TRACED_WRITES_PER_UPDATE as usize);
    }

    fn limits(account_capacity: usize) -> OutboxLimits {
        OutboxLimits {
            account_capacity,
            market_capacity: 3,
            conflate_after: Duration::from_secs(60),
            max_behind: Duration::from_secs(10),
        }
    }

    /// An outbox (account capacity 10) that `frames` were pushed to, in order, at `now`.
    fn outbox_with(frames: &[Arc<Frame>], now: Instant) -> Arc<Outbox> {
        let outbox = Outbox::new(limits(10));
        for frame in frames {
            outbox.push(frame, now);
        }
        outbox
    }

    fn sent(drained: &Drained) -> Vec<(&str, u64)> {
        drained.updates.iter().map(|f| (f.key.as_str(), f.seq)).collect()
    }

    #[test]
    fn many_frames_pushed_at_once_are_queued_in_order_for_one_wake() {
        let outbox = Outbox::new(OutboxLimits { market_capacity: 100, ..limits(10) });
        let now = Instant::now();
        let batch = [inst("ESZ6", 1), fill(1), inst("NQZ6", 1), inst("ESZ6", 2)];
        assert_eq!(outbox.push_many(batch.iter().cloned(), now), (Pushed::Wake, 0));
        assert_eq!(outbox.push_many([inst("ESZ6", 3)], now), (Pushed::Queued, 0), "already due: no second wake");
        assert_eq!(outbox.push_many([inst("ESZ6", 2), fill(1)], now), (Pushed::Stale, 0), "nothing new");
        let drained = outbox.drain(usize::MAX);
        assert_eq!(
            sent(&drained),
            vec![("fills:ACC1:ESZ6", 1), ("inst:ESZ6", 1), ("inst:NQZ6", 1), ("inst:ESZ6", 2), ("inst:ESZ6", 3)]
        );
        // Over the market lane's capacity (3) within one push: conflated, and counted.
        let outbox = Outbox::new(limits(10));
        let (pushed, conflated) = outbox.push_many((4..=8).map(|seq| inst("ESZ6", seq)), now);
        assert_eq!((pushed, conflated), (Pushed::Wake, 4));
        assert_eq!(sent(&outbox.drain(usize::MAX)), vec![("inst:ESZ6", 8)]);
    }

    #[test]
    fn an_account_overflow_within_many_frames_closes_and_takes_no_more() {
        let outbox = Outbox::new(limits(2));
        let now = Instant::now();
        let (pushed, _) = outbox.push_many([fill(1), fill(2), fill(3), inst("ESZ6", 1)], now);
        let Pushed::Closed(reason) = pushed else { panic!("closed, not {pushed:?}") };
        assert_eq!((reason.code, reason.just_closed, reason.dropped_account), (CLOSE_ACCOUNT_OVERFLOW, true, 2));
        assert!(matches!(
            outbox.push_many([inst("ESZ6", 2)], now),
            (Pushed::Closed(CloseReason { just_closed: false, .. }), 0)
        ));
    }

    #[test]
    fn market_lane_keeps_every_update_while_the_session_keeps_up() {
        let outbox = Outbox::new(limits(10));
        let now = Instant::now();
        assert_eq!(outbox.push(&inst("ESZ6", 1), now), Pushed::Wake);
        assert_eq!(outbox.push(&inst("ESZ6", 2), now), Pushed::Queued);
        assert_eq!(outbox.push(&inst("ESZ6", 2), now), Pushed::Stale);
        let drained = outbox.drain(100);
        assert_eq!(sent(&drained), vec![("inst:ESZ6", 1), ("inst:ESZ6", 2)]);
        assert!(!drained.more);
        // Drained: the next push wakes the session again.
        assert_eq!(outbox.push(&inst("ESZ6", 3), now), Pushed::Wake);
    }

    #[test]
    fn market_lane_conflates_to_latest_per_key_when_behind() {
        let now = Instant::now();
        let outbox = outbox_with(&[inst("ESZ6", 1), inst("CLF7", 1), inst("ESZ6", 2)], now);
        // Over the capacity of 3: conflated to the newest frame per key.
        assert_eq!(outbox.push(&inst("ESZ6", 3), now), Pushed::Conflated(2));
        assert_eq!(outbox.len(), 2);
        let drained = outbox.drain(100);
        assert_eq!(sent(&drained), vec![("inst:CLF7", 1), ("inst:ESZ6", 3)]);
    }

    #[test]
    fn a_merging_lane_replaces_a_queued_frame_in_its_place_until_it_is_empty() {
        let now = Instant::now();
        let outbox = outbox_with(&[inst("ESZ6", 1), inst("CLF7", 1), inst("ESZ6", 2)], now);
        assert_eq!(outbox.push(&inst("ESZ6", 3), now), Pushed::Conflated(2));
        // Merging: CLF7's newer state takes the place of the queued one, ahead of ESZ6.
        assert_eq!(outbox.push(&inst("CLF7", 2), now), Pushed::Conflated(1));
        assert_eq!(outbox.push(&inst("NQH7", 1), now), Pushed::Queued, "a new key goes to the back");
        assert_eq!(outbox.len(), 3);
        let drained = outbox.drain(2);
        assert_eq!(sent(&drained), vec![("inst:CLF7", 2), ("inst:ESZ6", 3)]);
        // Still merging (not empty yet): NQH7 is replaced where it waits.
        assert_eq!(outbox.push(&inst("NQH7", 2), now), Pushed::Conflated(1));
        // A key that was sent is queued again, at the back.
        assert_eq!(outbox.push(&inst("ESZ6", 4), now), Pushed::Queued);
        assert_eq!(sent(&outbox.drain(10)), vec![("inst:NQH7", 2), ("inst:ESZ6", 4)]);
        // Emptied: FIFO again, every update kept.
        for seq in 5..=7 {
            outbox.push(&inst("ESZ6", seq), now);
        }
        assert_eq!(sent(&outbox.drain(10)), vec![("inst:ESZ6", 5), ("inst:ESZ6", 6), ("inst:ESZ6", 7)]);
    }

    #[test]
    fn a_lane_that_stays_non_empty_longer_than_conflate_after_is_conflated() {
        let outbox = Outbox::new(OutboxLimits {
            market_capacity: 1_000,
            conflate_after: Duration::from_millis(100),
            ..limits(10)
        });
        let start = Instant::now();
        assert_eq!(outbox.push(&inst("ESZ6", 1), start), Pushed::Wake);
        assert_eq!(outbox.push(&inst("ESZ6", 2), start + Duration::from_millis(50)), Pushed::Queued);
        // Drained in part: the lane was never empty, so its clock runs on.
        assert_eq!(sent(&outbox.drain(1)), vec![("inst:ESZ6", 1)]);
        assert_eq!(outbox.push(&inst("CLF7", 1), start + Duration::from_millis(90)), Pushed::Queued);
        assert_eq!(outbox.push(&inst("ESZ6", 3), start + Duration::from_millis(150)), Pushed::Conflated(1));
        assert_eq!(sent(&outbox.drain(10)), vec![("inst:CLF7", 1), ("inst:ESZ6", 3)]);
        // Emptied: the clock restarts with the next update, however late it comes.
        let later = start + Duration::from_secs(5);
        assert_eq!(outbox.push(&inst("ESZ6", 4), later), Pushed::Wake);
        assert_eq!(outbox.push(&inst("ESZ6", 5), later + Duration::from_millis(99)), Pushed::Queued);
        assert_eq!(sent(&outbox.drain(10)), vec![("inst:ESZ6", 4), ("inst:ESZ6", 5)]);
    }

    #[test]
    fn a_session_holding_its_own_writes_is_not_taken_for_a_slow_client() {
        let outbox = Outbox::new(OutboxLimits {
            market_capacity: 1_000,
            conflate_after: Duration::from_millis(100),
            ..limits(10)
        });
        let start = Instant::now();
        outbox.hold(true, start);
        outbox.push(&inst("ESZ6", 1), start);
        // Two seconds of recovering: the wait is the session's, nothing is conflated.
        assert_eq!(outbox.push(&inst("ESZ6", 2), start + Duration::from_secs(2)), Pushed::Queued);
        // Released: the clock starts again then.
        let released = start + Duration::from_secs(3);
        outbox.hold(false, released);
        assert_eq!(outbox.push(&inst("ESZ6", 3), released + Duration::from_millis(50)), Pushed::Queued);
        assert_eq!(outbox.push(&inst("ESZ6", 4), released + Duration::from_millis(150)), Pushed::Conflated(3));
        assert_eq!(sent(&outbox.drain(10)), vec![("inst:ESZ6", 4)]);
    }

    #[test]
    fn a_lane_emptied_by_a_snapshot_while_merging_is_fifo_again() {
        let now = Instant::now();
        let outbox = outbox_with(&[inst("ESZ6", 1), inst("ESZ6", 2), inst("ESZ6", 3), inst("ESZ6", 4)], now);
        assert_eq!(outbox.len(), 1, "merging");
        outbox.push_snapshot("snap".into(), &[("inst:ESZ6".into(), 4)], now);
        for seq in 5..=7 {
            outbox.push(&inst("ESZ6", seq), now);
        }
        let drained = outbox.drain(10);
        assert_eq!(sent(&drained), vec![("inst:ESZ6", 5), ("inst:ESZ6", 6), ("inst:ESZ6", 7)]);
    }

    #[test]
    fn fills_are_never_conflated_however_long_they_wait() {
        let outbox = Outbox::new(OutboxLimits { conflate_after: Duration::ZERO, ..limits(10) });
        let start = Instant::now();
        for seq in 1..=5 {
            outbox.push(&fill(seq), start + Duration::from_secs(seq));
        }
        let seqs: Vec<u64> = outbox.drain(10).updates.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_snapshot_or_an_unsubscribe_while_merging_keeps_each_key_in_its_place() {
        let now = Instant::now();
        let outbox = outbox_with(&[inst("ESZ6", 1), inst("CLF7", 1), inst("NQH7", 1), inst("ESZ6", 2)], now);
        assert_eq!(outbox.len(), 3, "merging: CLF7, NQH7, ESZ6");
        // A snapshot at CLF7 seq 1 removes the queued CLF7 from the front of the lane...
        outbox.push_snapshot("snap".into(), &[("inst:CLF7".into(), 1)], now);
        // ...and the keys behind it are still replaced where they wait.
        assert_eq!(outbox.push(&inst("ESZ6", 3), now), Pushed::Conflated(1));
        outbox.forget(|key| key != "inst:NQH7");
        assert_eq!(outbox.push(&inst("ESZ6", 4), now), Pushed::Conflated(1));
        let drained = outbox.drain(10);
        assert_eq!(drained.control, vec![ByteString::from("snap")]);
        assert_eq!(sent(&drained), vec![("inst:ESZ6", 4)]);
    }

    #[test]
    fn account_lane_keeps_every_event_then_closes_on_overflow() {
        let outbox = Outbox::new(limits(3));
        let now = Instant::now();
        for seq in 1..=3 {
            assert!(matches!(outbox.push(&fill(seq), now), Pushed::Wake | Pushed::Queued));
        }
        match outbox.push(&fill(4), now) {
            Pushed::Closed(reason) => {
                assert_eq!(reason.code, CLOSE_ACCOUNT_OVERFLOW);
                assert!(reason.just_closed);
                assert_eq!((reason.dropped_account, reason.dropped_market), (3, 0), "what the close discarded");
            }
            other => panic!("expected a close, got {other:?}"),
        }
        match outbox.push(&fill(5), now) {
            Pushed::Closed(reason) => assert!(!reason.just_closed, "counted once, at the close"),
            other => panic!("expected a close, got {other:?}"),
        }
        let drained = outbox.drain(100);
        assert!(drained.updates.is_empty(), "nothing half-delivered after the close");
        assert_eq!(drained.close.map(|c| c.code), Some(CLOSE_ACCOUNT_OVERFLOW));
    }

    #[test]
    fn account_events_go_before_market_and_in_order() {
        let now = Instant::now();
        let outbox = outbox_with(&[inst("ESZ6", 1), fill(1), fill(2)], now);
        let drained = outbox.drain(2);
        let sent: Vec<_> = drained.updates.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(sent, vec!["fills:ACC1:ESZ6", "fills:ACC1:ESZ6"]);
        assert!(drained.more);
        assert_eq!(outbox.drain(10).updates.len(), 1);
    }

    #[test]
    fn snapshot_joins_the_stream_without_gap_or_duplicate() {
        let now = Instant::now();
        let outbox = outbox_with(&[inst("ESZ6", 4), inst("CLF7", 8)], now);
        // A snapshot taken at seq 5 supersedes the queued seq 4...
        outbox.push_snapshot("snap".into(), &[("inst:ESZ6".into(), 5)], now);
        // ...and the stream resumes after it.
        assert_eq!(outbox.push(&inst("ESZ6", 5), now), Pushed::Stale);
        outbox.push(&inst("ESZ6", 6), now);
        let drained = outbox.drain(10);
        assert_eq!(drained.control, vec![ByteString::from("snap")]);
        assert_eq!(sent(&drained), vec![("inst:CLF7", 8), ("inst:ESZ6", 6)]);
    }

    /// Fills waiting when a snapshot covers their lane are not sent after it: the snapshot's
    /// `fill_seq` says where the lane stands (the client refills what it lacks), and a fill
    /// sent after it would be one the client may have refilled already.
    #[test]
    fn a_snapshot_drops_the_waiting_fills_it_covers_and_keeps_later_ones() {
        let now = Instant::now();
        let outbox = outbox_with(&[fill(3), fill_of("ACC2", 2), fill(4), fill(5)], now);
        outbox.push_snapshot("snap".into(), &[("fills:ACC1:ESZ6".into(), 4)], now);
        assert_eq!(outbox.push(&fill(4), now), Pushed::Stale);
        outbox.push(&fill(6), now);
        let drained = outbox.drain(10);
        assert_eq!(drained.control, vec![ByteString::from("snap")]);
        let expected = [("fills:ACC2:ESZ6", 2), ("fills:ACC1:ESZ6", 5), ("fills:ACC1:ESZ6", 6)];
        assert_eq!(sent(&drained), expected, "a lane the snapshot does not hold keeps its fills");
    }

    #[test]
    fn a_session_that_makes_no_progress_is_closed_by_the_sweep() {
        let outbox = Outbox::new(OutboxLimits { max_behind: Duration::from_millis(100), ..limits(10) });
        let start = Instant::now();
        outbox.push(&inst("ESZ6", 1), start);
        assert_eq!(outbox.check_progress(start + Duration::from_millis(50)), None);
        let closed = outbox.check_progress(start + Duration::from_millis(150)).map(|r| r.code);
        assert_eq!(closed, Some(CLOSE_TOO_SLOW));
        assert_eq!(outbox.drain(10).close.map(|r| r.code), Some(CLOSE_TOO_SLOW));
    }

    #[test]
    fn an_empty_outbox_is_never_behind() {
        let outbox = Outbox::new(OutboxLimits { max_behind: Duration::from_millis(1), ..limits(10) });
        let start = Instant::now();
        outbox.push(&inst("ESZ6", 1), start);
        outbox.drain(10);
        assert_eq!(outbox.check_progress(start + Duration::from_secs(60)), None);
    }

    #[test]
    fn a_session_behind_too_long_is_closed() {
        let outbox = Outbox::new(OutboxLimits { max_behind: Duration::from_millis(100), ..limits(10) });
        let start = Instant::now();
        outbox.push(&inst("ESZ6", 1), start);
        outbox.push(&inst("ESZ6", 2), start + Duration::from_millis(50));
        match outbox.push(&inst("ESZ6", 3), start + Duration::from_millis(150)) {
            Pushed::Closed(reason) => assert_eq!(reason.code, CLOSE_TOO_SLOW),
            other => panic!("expected a close, got {other:?}"),
        }
    }
}
