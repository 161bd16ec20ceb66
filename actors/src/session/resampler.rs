//! A subscribe's `max_rate` (Lightstreamer's `maxFrequency`), applied once per rate in the hub:
//! the sessions granted one rate share one `Resampler`, so a state is passed or held once per
//! rate and key, not once per session. A key's state goes out at once when the key was last sent
//! at least an interval ago; otherwise it waits, a newer state replacing it, and is released when
//! the interval has passed: at most `rate` states per key per second, and the newest one never
//! more than `1/rate` after the one sent before it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outbox::Frame;

pub struct Resampler {
    interval: Duration,
    /// When each key's state last went out to this rate's sessions.
    sent_at: HashMap<String, Instant>,
    /// The newest state of each key waiting for its turn.
    held: HashMap<String, Arc<Frame>>,
}

/// What [`Resampler::release`] found for a key.
#[derive(Debug)]
pub enum Due {
    /// Its turn has come: send it.
    Now(Arc<Frame>),
    /// It waits until then (a release asked too early).
    At(Instant),
    /// Nothing waits for the key.
    Nothing,
}

impl Due {
    /// The seq of the state released now, if any (tests).
    #[cfg(test)]
    fn seq(&self) -> Option<u64> {
        match self {
            Due::Now(frame) => Some(frame.seq),
            _ => None,
        }
    }
}

/// What to do with a state offered to a [`Resampler`].
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Send it now.
    Now,
    /// It waits; `release` it at this time (a state already waiting for the key was replaced,
    /// and its release is already due: `None`).
    Held(Option<Instant>),
}

impl Resampler {
    /// `rate` states per key per second (at least 1).
    pub fn new(rate: u32) -> Self {
        Self { interval: Duration::from_secs(1) / rate.max(1), sent_at: HashMap::new(), held: HashMap::new() }
    }

    pub fn offer(&mut self, frame: &Arc<Frame>, now: Instant) -> Turn {
        if let Some(waiting) = self.held.get_mut(&frame.key) {
            if frame.seq > waiting.seq {
                *waiting = frame.clone();
            }
            return Turn::Held(None);
        }
        match self.sent_at.get_mut(&frame.key) {
            Some(sent) if now < *sent + self.interval => {
                let due = *sent + self.interval;
                self.held.insert(frame.key.clone(), frame.clone());
                Turn::Held(Some(due))
            }
            Some(sent) => {
                *sent = now;
                Turn::Now
            }
            None => {
                self.sent_at.insert(frame.key.clone(), now);
                Turn::Now
            }
        }
    }

    /// The state of `key` that waits, if its turn has come at `now` (then recorded as sent).
    pub fn release(&mut self, key: &str, now: Instant) -> Due {
        let Some(sent) = self.sent_at.get_mut(key) else { return Due::Nothing };
        if !self.held.contains_key(key) {
            return Due::Nothing;
        }
        let due = *sent + self.interval;
        if now < due {
            return Due::At(due);
        }
        *sent = now;
        self.held.remove(key).map_or(Due::Nothing, Due::Now)
    }

    /// Every key that waits, with when its turn comes (to schedule its release again after the
    /// hub restarted and lost its timers).
    pub fn pending(&self) -> Vec<(String, Instant)> {
        let due = |key: &String| self.sent_at.get(key).map_or_else(Instant::now, |sent| *sent + self.interval);
        self.held.keys().map(|key| (key.clone(), due(key))).collect()
    }

    /// What waits whose key `wanted` says, in key order (for a session that leaves this rate:
    /// it gets them at once instead of never).
    pub fn waiting(&self, wanted: impl Fn(&str) -> bool) -> Vec<Arc<Frame>> {
        let mut frames: Vec<Arc<Frame>> = self.held.values().filter(|f| wanted(&f.key)).cloned().collect();
        frames.sort_by(|a, b| a.key.cmp(&b.key));
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::outbox::tests::inst;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_key_goes_at_once_when_it_has_not_gone_for_an_interval_and_waits_otherwise() {
        let mut r = Resampler::new(10); // 100 ms
        let t0 = Instant::now();
        assert_eq!(r.offer(&inst("ESZ6", 1), t0), Turn::Now, "the first state of a key goes at once");
        assert_eq!(r.offer(&inst("NQZ6", 1), t0), Turn::Now, "keys are resampled apart");
        assert_eq!(r.offer(&inst("ESZ6", 2), t0 + 30 * MS), Turn::Held(Some(t0 + 100 * MS)));
        assert_eq!(r.offer(&inst("ESZ6", 3), t0 + 40 * MS), Turn::Held(None), "the newest replaces it");
        assert!(
            matches!(r.release("inst:ESZ6", t0 + 99 * MS), Due::At(at) if at == t0 + 100 * MS),
            "not before its turn"
        );
        assert_eq!(r.release("inst:ESZ6", t0 + 100 * MS).seq(), Some(3), "only the newest, when due");
        assert!(matches!(r.release("inst:ESZ6", t0 + 300 * MS), Due::Nothing), "nothing waits any more");
        // Sent at 100 ms: the next waits until 200 ms; after a quiet interval it goes at once.
        assert_eq!(r.offer(&inst("ESZ6", 4), t0 + 150 * MS), Turn::Held(Some(t0 + 200 * MS)));
        assert_eq!(r.release("inst:ESZ6", t0 + 200 * MS).seq(), Some(4));
        assert_eq!(r.offer(&inst("ESZ6", 5), t0 + 301 * MS), Turn::Now);
    }

    #[test]
    fn an_older_state_never_replaces_a_newer_one_that_waits() {
        let mut r = Resampler::new(1);
        let t0 = Instant::now();
        assert_eq!(r.offer(&inst("ESZ6", 5), t0), Turn::Now);
        assert_eq!(r.offer(&inst("ESZ6", 7), t0 + MS), Turn::Held(Some(t0 + Duration::from_secs(1))));
        assert_eq!(r.offer(&inst("ESZ6", 6), t0 + 2 * MS), Turn::Held(None));
        assert_eq!(r.release("inst:ESZ6", t0 + Duration::from_secs(1)).seq(), Some(7));
    }

    #[test]
    fn what_waits_is_handed_over_in_key_order_and_still_released_for_the_others() {
        let mut r = Resampler::new(2);
        let t0 = Instant::now();
        for symbol in ["NQZ6", "ESZ6", "CLF7"] {
            r.offer(&inst(symbol, 1), t0);
            r.offer(&inst(symbol, 2), t0 + MS);
        }
        let keys = |frames: Vec<Arc<Frame>>| frames.iter().map(|f| f.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(r.waiting(|_| true)), ["inst:CLF7", "inst:ESZ6", "inst:NQZ6"]);
        assert_eq!(keys(r.waiting(|k| k == "inst:ESZ6")), ["inst:ESZ6"]);
        assert_eq!(r.pending().iter().filter(|(key, _)| key == "inst:ESZ6").count(), 1);
        assert!(r.pending().iter().all(|(_, due)| *due == t0 + 500 * MS));
        assert_eq!(r.release("inst:ESZ6", t0 + 500 * MS).seq(), Some(2));
        assert_eq!(r.pending().len(), 2);
    }
}
