//! The rules for identifiers, stated once: accounts, order and fill ids, event sequences, and
//! the event sources that only ttpulse itself may assign.

use super::Micros;

/// Longest account name.
pub const MAX_ACCOUNT_LEN: usize = 64;
/// Longest order or fill id.
pub const MAX_ORDER_ID_LEN: usize = 128;
/// Highest event sequence accepted: 2^53 - 1, the largest integer a browser holds exactly.
/// ttpulse's own ids (Unix micros) stay below it until the year 2255.
pub const MAX_EVENT_SEQ: u64 = (1 << 53) - 1;

/// What an account name may be, for error messages.
pub const ACCOUNT_RULE: &str = "1 to 64 characters of A-Z a-z 0-9 . _ -";

/// Whether `name` is a valid account: 1 to 64 of `A-Z a-z 0-9 . _ -`. The same rule holds on
/// ingest, on the HTTP read API and in WebSocket subscriptions, so no account can carry markup,
/// a key separator or control characters.
fn is_valid_account(name: &str) -> bool {
    (1..=MAX_ACCOUNT_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An account name that follows [`ACCOUNT_RULE`]: only [`Account::parse`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Account<'a>(&'a str);

/// An account name that breaks [`ACCOUNT_RULE`]; its message is the one every edge shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid account `{0}`: an account is {ACCOUNT_RULE}")]
pub struct InvalidAccount(pub String);

impl<'a> Account<'a> {
    pub fn parse(name: &'a str) -> Result<Self, InvalidAccount> {
        if is_valid_account(name) { Ok(Self(name)) } else { Err(InvalidAccount(name.to_owned())) }
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl std::fmt::Display for Account<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Whether `id` is a valid order or fill id: 1 to 128 visible ASCII characters (no spaces, no
/// control characters).
pub fn is_valid_order_id(id: &str) -> bool {
    (1..=MAX_ORDER_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The source ttpulse gives to events pushed over HTTP without an id.
pub const API_SOURCE: &str = "api";

/// Sources ttpulse assigns itself: the simulator, replays, pushed events and topic positions.
/// A client that sent one of these could make ttpulse's own later events look like duplicates.
pub fn is_reserved_source(source: &str) -> bool {
    source == API_SOURCE || source == "sim" || source.starts_with("replay-") || source.starts_with("kafka-p")
}

/// Whether a client may send an event id of `source` and `seq` at time `now`: any source of
/// its own, and an `api` id only as a resend of one ttpulse handed out (those are ingest times
/// in micros, so never ahead of `now`).
pub fn client_may_use(source: &str, seq: u64, now: Micros) -> bool {
    if source == API_SOURCE {
        return u64::try_from(now).is_ok_and(|now| seq <= now);
    }
    !is_reserved_source(source)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn accounts() {
        for good in ["ACC1", "a", "desk-1.alpha_2", &"x".repeat(64)] {
            assert!(is_valid_account(good), "{good}");
        }
        for bad in ["", "<img src=x onerror=alert(1)>", "A:B", "A B", "tab\t", "é", &"x".repeat(65), "a/b", "*"] {
            assert!(!is_valid_account(bad), "{bad}");
        }
    }

    #[test]
    fn order_ids() {
        assert!(is_valid_order_id("o-1/2:3"));
        assert!(!is_valid_order_id(""));
        assert!(!is_valid_order_id("a b"));
        assert!(!is_valid_order_id("a\u{7}"));
        assert!(!is_valid_order_id(&"x".repeat(129)));
    }

    #[test]
    fn reserved_sources() {
        assert!(client_may_use("feed-x", MAX_EVENT_SEQ, 0));
        for reserved in ["sim", "replay-day1.jsonl", "kafka-p3"] {
            assert!(!client_may_use(reserved, 1, 1_000), "{reserved}");
        }
        assert!(client_may_use("api", 1_000, 1_000), "a resend of an id ttpulse handed out");
        assert!(!client_may_use("api", 1_001, 1_000), "an api id from the future poisons later ones");
        assert!(!client_may_use("api", u64::MAX, i64::MAX));
    }
}
