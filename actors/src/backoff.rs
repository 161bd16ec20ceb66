//! Exponential backoff for the retry loops (a hop that refused a batch, a database or broker
//! that is down): the first delay, doubled after each failure up to a cap, back to the first
//! after a success.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, next: first }
    }

    /// The delay to wait after this failure; the next one is twice as long (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// The delay the next failure will wait (for logs).
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// After a success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Whether a failure was retried since the last reset.
    pub fn retried(&self) -> bool {
        self.next > self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(350));
        assert!(!backoff.retried());
        let delays: Vec<Duration> = (0..4).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(350), ms(350)]);
        assert!(backoff.retried());
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(100));
    }
}
