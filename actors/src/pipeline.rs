//! `CommitWindow`: the in-order commit tracker of a pipelined consumer (pure logic, no I/O).
//!
//! Batches enter in the order they were read and finish in any order; a batch is committed only
//! when it and every batch before it finished well, so a committed offset never passes a batch
//! whose effects are not durable. A batch that failed stops every later one from committing:
//! it and all after it are handed back, in order, to be offered again. The window holds at most
//! `capacity` batches; a full window takes nothing more (the caller waits for the head).

use std::collections::VecDeque;

/// A batch's place in the window, given when it enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Done,
    Failed,
}

#[derive(Debug)]
struct Entry<T> {
    ticket: Ticket,
    state: State,
    item: T,
}

/// What [`CommitWindow::settle`] hands back.
#[derive(Debug, PartialEq, Eq)]
pub struct Settled<T> {
    /// Batches that may be committed now, in order.
    pub commit: Vec<T>,
    /// A failed batch and every batch after it, in order: none may be committed; offer them again.
    pub redo: Vec<T>,
}

/// The window is full: the batch was not taken (it comes back).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the commit window is full ({capacity} batches in flight)")]
pub struct Full<T> {
    pub capacity: usize,
    pub item: T,
}

#[derive(Debug)]
pub struct CommitWindow<T> {
    capacity: usize,
    next: u64,
    entries: VecDeque<Entry<T>>,
}

impl<T> CommitWindow<T> {
    /// A window of at most `capacity` batches (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { capacity, next: 0, entries: VecDeque::with_capacity(capacity) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Batches in the window (in flight, or finished but behind an unfinished one).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// Takes the next batch, after every batch taken before it.
    pub fn push(&mut self, item: T) -> Result<Ticket, Full<T>> {
        if self.is_full() {
            return Err(Full { capacity: self.capacity, item });
        }
        let ticket = Ticket(self.next);
        self.next += 1;
        self.entries.push_back(Entry { ticket, state: State::InFlight, item });
        Ok(ticket)
    }

    /// Records how a batch finished. A ticket no longer in the window (handed back by `settle`)
    /// is ignored: its batch will be offered again under a new ticket.
    pub fn finish(&mut self, ticket: Ticket, ok: bool) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.ticket == ticket)
            && entry.state == State::InFlight
        {
            entry.state = if ok { State::Done } else { State::Failed };
        }
    }

    /// Removes the finished head of the window: the batches that finished well up to the first
    /// unfinished one (to commit), and, if that first one failed, it and everything after it.
    pub fn settle(&mut self) -> Settled<T> {
        let mut commit = Vec::new();
        while self.entries.front().is_some_and(|e| e.state == State::Done) {
            if let Some(entry) = self.entries.pop_front() {
                commit.push(entry.item);
            }
        }
        let redo = if self.entries.front().is_some_and(|e| e.state == State::Failed) {
            self.entries.drain(..).map(|e| e.item).collect()
        } else {
            Vec::new()
        };
        Settled { commit, redo }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of `capacity` holding `items` in order, and their tickets.
    fn holding<T: std::fmt::Debug, const N: usize>(capacity: usize, items: [T; N]) -> (CommitWindow<T>, [Ticket; N]) {
        let mut window = CommitWindow::new(capacity);
        let tickets = items.map(|item| window.push(item).unwrap());
        (window, tickets)
    }

    #[test]
    fn batches_commit_in_order_however_they_finish() {
        let (mut window, [a, b, c]) = holding(3, ["a", "b", "c"]);
        // The last and the middle finish first: nothing may be committed past `a`.
        window.finish(c, true);
        window.finish(b, true);
        assert_eq!(window.settle(), Settled { commit: vec![], redo: vec![] });
        assert_eq!(window.len(), 3);
        window.finish(a, true);
        assert_eq!(window.settle(), Settled { commit: vec!["a", "b", "c"], redo: vec![] });
        assert!(window.is_empty());
    }

    #[test]
    fn only_the_finished_prefix_is_committed() {
        let (mut window, [a, b, _c, d]) = holding(4, [1, 2, 3, 4]);
        window.finish(a, true);
        window.finish(b, true);
        window.finish(d, true);
        assert_eq!(window.settle(), Settled { commit: vec![1, 2], redo: vec![] });
        // 3 is still in flight: 4 waits behind it.
        assert_eq!(window.settle(), Settled { commit: vec![], redo: vec![] });
        assert_eq!(window.len(), 2);
    }

    #[test]
    fn a_failed_batch_blocks_every_later_one_and_all_are_offered_again_in_order() {
        let (mut window, [a, b, c, d]) = holding(4, ["a", "b", "c", "d"]);
        // c and d were stored, but b failed: their offsets must not be committed.
        window.finish(c, true);
        window.finish(d, true);
        window.finish(b, false);
        // While a is in flight nothing is decided.
        assert_eq!(window.settle(), Settled { commit: vec![], redo: vec![] });
        window.finish(a, true);
        assert_eq!(window.settle(), Settled { commit: vec!["a"], redo: vec!["b", "c", "d"] });
        assert!(window.is_empty());
        // Their old tickets mean nothing now.
        window.finish(c, false);
        let again = window.push("b").unwrap();
        assert_ne!(again, b);
        window.finish(again, true);
        assert_eq!(window.settle(), Settled { commit: vec!["b"], redo: vec![] });
    }

    #[test]
    fn a_failure_behind_an_unfinished_batch_waits_for_it() {
        let mut window = CommitWindow::new(3);
        let a = window.push('a').unwrap();
        let b = window.push('b').unwrap();
        window.finish(b, false);
        assert_eq!(window.settle(), Settled { commit: vec![], redo: vec![] });
        // `a` failing too: both again, `a` first.
        window.finish(a, false);
        assert_eq!(window.settle(), Settled { commit: vec![], redo: vec!['a', 'b'] });
    }

    #[test]
    fn a_full_window_takes_nothing_until_its_head_settles() {
        let mut window = CommitWindow::new(2);
        let a = window.push(1).unwrap();
        let b = window.push(2).unwrap();
        assert!(window.is_full());
        assert_eq!(window.push(3), Err(Full { capacity: 2, item: 3 }));
        // The second finishing frees nothing: the head is still in flight.
        window.finish(b, true);
        window.settle();
        assert!(window.is_full());
        window.finish(a, true);
        assert_eq!(window.settle().commit, vec![1, 2]);
        assert!(window.push(3).is_ok());
    }

    #[test]
    fn a_finish_is_recorded_once() {
        let mut window = CommitWindow::new(2);
        let a = window.push(1).unwrap();
        window.finish(a, false);
        // A late success does not undo the failure.
        window.finish(a, true);
        assert_eq!(window.settle(), Settled { commit: vec![], redo: vec![1] });
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut window = CommitWindow::new(0);
        assert_eq!(window.capacity(), 1);
        assert!(window.push(()).is_ok());
        assert!(window.is_full());
    }
}
