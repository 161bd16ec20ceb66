//! `Outgoing`: the updates a cache has stored and not yet handed to the hub (hop 3), pure logic.
//!
//! The cache does not wait for the hub: it stores a batch, adds its fresh updates here and
//! answers. One forwarder hands everything waiting to the hub as one batch, in order, then
//! takes what came meanwhile. While the hub keeps up, every update goes through as it came.
//! Once what waits has waited longer than `conflate_after` (the hub is behind the feed), the
//! queue is *merging* until it is taken: a newer state (instrument, candle, position, P&L)
//! replaces the waiting state of its key in its place, so the hub routes the latest state of
//! each key instead of a backlog, and a state's delay is one pass of the fan-out, not the
//! depth of the queues before it. Events (fills, prints) are never merged; when more than
//! `max_events` wait, the cache waits for the hub, as it did for every batch before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::domain::{Published, Update};

#[derive(Debug, Default)]
pub struct Outgoing {
    updates: Vec<Published>,
    /// Since when something has been waiting.
    since: Option<Instant>,
    /// Each waiting state's place in `updates`, by key, while merging.
    merging: Option<HashMap<String, usize>>,
    /// Fills and prints waiting.
    events: usize,
}

/// Whether an update is an event (never replaced by a newer one) rather than a key's state.
fn is_event(update: &Published) -> bool {
    matches!(update.update, Update::Fill(_) | Update::Trade(_))
}

impl Outgoing {
    /// Adds a batch's fresh updates (in order); returns how many waiting states they replaced.
    pub fn add(&mut self, fresh: Vec<Published>, now: Instant, conflate_after: Duration) -> usize {
        if fresh.is_empty() {
            return 0;
        }
        let since = *self.since.get_or_insert(now);
        let mut replaced = 0;
        if self.merging.is_none() && now.duration_since(since) > conflate_after {
            replaced += self.start_merging();
        }
        for update in fresh {
            let event = is_event(&update);
            if let Some(places) = &mut self.merging
                && !event
            {
                if let Some(&place) = places.get(&update.key) {
                    self.updates[place] = update;
                    replaced += 1;
                    continue;
                }
                places.insert(update.key.clone(), self.updates.len());
            }
            self.events += usize::from(event);
            self.updates.push(update);
        }
        replaced
    }

    /// Keeps the newest waiting state of each key, in its place, and every event; returns how
    /// many states were dropped.
    fn start_merging(&mut self) -> usize {
        let before = self.updates.len();
        let mut newest: HashMap<&str, usize> = HashMap::new();
        for (place, update) in self.updates.iter().enumerate().filter(|(_, u)| !is_event(u)) {
            newest.insert(&update.key, place);
        }
        let keep: Vec<bool> = self
            .updates
            .iter()
            .enumerate()
            .map(|(place, update)| is_event(update) || newest.get(update.key.as_str()) == Some(&place))
            .collect();
        let mut keep = keep.into_iter();
        self.updates.retain(|_| keep.next().unwrap_or(true));
        let places = self
            .updates
            .iter()
            .enumerate()
            .filter(|(_, u)| !is_event(u))
            .map(|(place, update)| (update.key.clone(), place))
            .collect();
        self.merging = Some(places);
        before - self.updates.len()
    }

    /// Takes everything waiting, in order; the next update starts a new wait.
    pub fn take(&mut self) -> Vec<Published> {
        self.since = None;
        self.merging = None;
        self.events = 0;
        std::mem::take(&mut self.updates)
    }

    pub fn len(&self) -> usize {
        self.updates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// Fills and prints waiting (they are never merged, so they bound what may wait).
    pub fn events(&self) -> usize {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InstrumentState, Side, TradePrint};

    fn inst(symbol: &str, seq: u64) -> Published {
        let mut state = InstrumentState::empty(symbol);
        state.seq = seq;
        Published::new(Update::Instrument(state), 0)
    }

    fn print(symbol: &str, seq: u64) -> Published {
        let print = TradePrint {
            symbol: symbol.into(),
            seq,
            event_id: format!("feed:{seq}"),
            price: 1.into(),
            qty: 1,
            aggressor: Side::Buy,
            ts: 1,
        };
        Published::new(Update::Trade(print), 0)
    }

    fn keys(updates: &[Published]) -> Vec<(String, u64)> {
        updates.iter().map(|u| (u.key.clone(), u.seq())).collect()
    }

    fn expected(items: &[(&str, u64)]) -> Vec<(String, u64)> {
        items.iter().map(|(k, s)| (k.to_string(), *s)).collect()
    }

    const BOUND: Duration = Duration::from_millis(100);

    #[test]
    fn while_the_hub_keeps_up_every_update_goes_through_in_order() {
        let mut out = Outgoing::default();
        let now = Instant::now();
        assert_eq!(out.add(vec![inst("ESZ6", 1), inst("ESZ6", 2)], now, BOUND), 0);
        assert_eq!(out.add(vec![inst("ESZ6", 3)], now + BOUND, BOUND), 0, "not longer than the bound");
        assert_eq!(keys(&out.take()), expected(&[("inst:ESZ6", 1), ("inst:ESZ6", 2), ("inst:ESZ6", 3)]));
        assert!(out.is_empty());
        // The wait starts again with the next update.
        assert_eq!(out.add(vec![inst("ESZ6", 4)], now + BOUND * 5, BOUND), 0);
        assert_eq!(out.add(vec![inst("ESZ6", 5)], now + BOUND * 5, BOUND), 0);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn once_behind_the_latest_state_of_each_key_replaces_the_waiting_one_in_its_place() {
        let mut out = Outgoing::default();
        let now = Instant::now();
        out.add(vec![inst("ESZ6", 1), print("ESZ6", 1), inst("NQZ6", 1), inst("ESZ6", 2)], now, BOUND);
        let later = now + BOUND + Duration::from_millis(1);
        // Entering the merge drops ESZ6 1 (ESZ6 2 is newer); then NQZ6 2 replaces NQZ6 1 and
        // ESZ6 3 replaces ESZ6 2, each in its place; prints are all kept.
        assert_eq!(out.add(vec![inst("NQZ6", 2), print("ESZ6", 2), inst("ESZ6", 3)], later, BOUND), 3);
        assert_eq!(out.events(), 2);
        assert_eq!(
            keys(&out.take()),
            expected(&[("trades:ESZ6", 1), ("inst:NQZ6", 2), ("inst:ESZ6", 3), ("trades:ESZ6", 2)])
        );
        // Taken: the next batch goes through whole again.
        assert_eq!(out.add(vec![inst("ESZ6", 4), inst("ESZ6", 5)], later, BOUND), 0);
        assert_eq!(out.take().len(), 2);
        assert_eq!(out.events(), 0);
    }
}
