//! What a subscription or a read asks for: every instrument or account (`*`), or a list of
//! names, each checked by the one rule for its kind. The WebSocket subscribe and the HTTP reads
//! parse their lists here, so a name one of them accepts the other accepts too.

use super::ids::Account;
use super::instruments::InstrumentCatalog;
pub use super::instruments::UnknownInstrument;

/// Which instruments or accounts a read or a subscription covers: all of them, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Only(Vec<String>),
}

impl Filter {
    /// A list holding `"*"` means all.
    pub fn from_list(items: &[String]) -> Self {
        if items.iter().any(|i| i == "*") { Filter::All } else { Filter::Only(items.to_vec()) }
    }

    /// Accounts: `*` or valid account names ([`Account::parse`]); the first invalid one is
    /// the error.
    pub fn accounts(items: &[String]) -> Result<Self, super::ids::InvalidAccount> {
        for item in items.iter().filter(|i| *i != "*") {
            Account::parse(item)?;
        }
        Ok(Self::from_list(items))
    }

    /// Instruments: `*` or symbols of `catalog`; the first unknown one is the error.
    pub fn instruments(items: &[String], catalog: &InstrumentCatalog) -> Result<Self, UnknownInstrument> {
        for item in items.iter().filter(|i| *i != "*") {
            catalog.symbol(item)?;
        }
        Ok(Self::from_list(items))
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(names) => names.iter().any(|n| n == name),
        }
    }

    pub fn none() -> Self {
        Filter::Only(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn lists_are_parsed_by_the_rule_of_their_kind() {
        let catalog = InstrumentCatalog::default_futures();
        assert_eq!(Filter::instruments(&list(&["ESZ6", "*"]), &catalog), Ok(Filter::All));
        assert_eq!(Filter::instruments(&list(&["ESZ6"]), &catalog), Ok(Filter::Only(list(&["ESZ6"]))));
        assert_eq!(Filter::instruments(&list(&["ESZ6", "NOPE"]), &catalog), Err(UnknownInstrument("NOPE".into())));
        assert_eq!(Filter::accounts(&list(&["*", "ACC1"])), Ok(Filter::All));
        assert_eq!(Filter::accounts(&list(&["desk-1.A_2"])), Ok(Filter::Only(list(&["desk-1.A_2"]))));
        let refused = Filter::accounts(&list(&["ACC1", "<b>x</b>"])).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "invalid account `<b>x</b>`: an account is 1 to 64 characters of A-Z a-z 0-9 . _ -"
        );
        assert!(!Filter::none().matches("x") && Filter::All.matches("x"));
    }
}
