//! The keys of the latest state (`inst:ESZ6`, `candle:ESZ6:1s`, `pos:ACC1:ESZ6`,
//! `fills:ACC1:ESZ6`), written and read in one place. Every update, the snapshot's seqs, the
//! session outbox's join of snapshot and stream, and Redis (`tt:` + key) name keys this way:
//! they must agree, or a snapshot would not cover its stream.

use std::fmt;

use super::candles::Interval;
use super::updates::Topic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    Instrument(&'a str),
    Candle(&'a str, Interval),
    Position {
        account: &'a str,
        symbol: &'a str,
    },
    Fills {
        account: &'a str,
        symbol: &'a str,
    },
    /// An instrument's prints (its latest print is the key's state).
    Trades(&'a str),
    /// An account's P&L over time, per interval.
    Pnl {
        account: &'a str,
        interval: Interval,
    },
}

impl<'a> Key<'a> {
    /// Reads a key written by [`Key`]'s `Display`; `None` for anything else. (Accounts and
    /// symbols hold no `:`, so the parts are unambiguous.)
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.split(':');
        let key = match (parts.next()?, parts.next()?, parts.next()) {
            ("inst", symbol, None) => Key::Instrument(symbol),
            ("trades", symbol, None) => Key::Trades(symbol),
            ("pnl", account, Some(interval)) => Key::Pnl { account, interval: Interval::parse(interval)? },
            ("candle", symbol, Some(interval)) => Key::Candle(symbol, Interval::parse(interval)?),
            ("pos", account, Some(symbol)) => Key::Position { account, symbol },
            ("fills", account, Some(symbol)) => Key::Fills { account, symbol },
            _ => return None,
        };
        parts.next().is_none().then_some(key)
    }

    /// The subscription topic an update of this key is routed by.
    pub fn topic(&self) -> Topic<'a> {
        match *self {
            Key::Instrument(symbol) | Key::Candle(symbol, _) => Topic::Instrument(symbol),
            Key::Position { account, .. } | Key::Fills { account, .. } | Key::Pnl { account, .. } => {
                Topic::Account(account)
            }
            Key::Trades(symbol) => Topic::Prints(symbol),
        }
    }

    /// The account of an account's key (its position or its fills).
    pub fn account(&self) -> Option<&'a str> {
        match self {
            Key::Position { account, .. } | Key::Fills { account, .. } | Key::Pnl { account, .. } => Some(account),
            _ => None,
        }
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Instrument(symbol) => write!(f, "inst:{symbol}"),
            Key::Candle(symbol, interval) => write!(f, "candle:{symbol}:{interval}"),
            Key::Position { account, symbol } => write!(f, "pos:{account}:{symbol}"),
            Key::Fills { account, symbol } => write!(f, "fills:{account}:{symbol}"),
            Key::Trades(symbol) => write!(f, "trades:{symbol}"),
            Key::Pnl { account, interval } => write!(f, "pnl:{account}:{interval}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_what_they_write() {
        let keys = [
            Key::Instrument("ESZ6"),
            Key::Candle("ESZ6", Interval::OneSecond),
            Key::Candle("6EZ6", Interval::OneMinute),
            Key::Position { account: "desk-1.A_2", symbol: "ZNH7" },
            Key::Fills { account: "ACC1", symbol: "ESZ6" },
            Key::Trades("CLF7"),
            Key::Pnl { account: "ACC1", interval: Interval::OneMinute },
        ];
        for key in keys {
            let text = key.to_string();
            assert_eq!(Key::parse(&text), Some(key), "{text}");
        }
        assert_eq!(Key::Fills { account: "A", symbol: "ESZ6" }.to_string(), "fills:A:ESZ6");
        assert_eq!(Key::parse("pos:A:ESZ6").and_then(|k| k.account()), Some("A"));
        assert_eq!(Key::parse("inst:ESZ6").and_then(|k| k.account()), None);
        let topic = |text: &'static str| Key::parse(text).map(|k| k.topic());
        assert_eq!(topic("candle:ESZ6:1m"), Some(Topic::Instrument("ESZ6")));
        assert_eq!(topic("pos:A:ESZ6"), Some(Topic::Account("A")));
        assert_eq!(topic("pnl:A:1s"), Some(Topic::Account("A")));
        assert_eq!(topic("trades:CLF7"), Some(Topic::Prints("CLF7")));
        for bad in ["", "inst", "inst:A:B", "fills:A", "fills:A:B:C", "candle:ESZ6:5m", "other:A:B"] {
            assert_eq!(Key::parse(bad), None, "{bad}");
        }
    }
}
