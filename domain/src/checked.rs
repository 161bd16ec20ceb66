//! Checked arithmetic for the domain. Every sum, product and quotient here either fits its
//! type or becomes a refusal that names the field of the event that would have overflowed it:
//! no panic (which would stop the actor) and no silent wrap (which would corrupt a total).
//! `clippy::arithmetic_side_effects` is denied across `domain/` to keep it that way.

use super::events::ValidationError;

pub trait OrRefuse<T> {
    /// `None` (an overflow, or a division by zero) becomes a refusal of `field`, saying which
    /// figure could not be computed.
    fn or_refuse(self, field: &str, figure: &str) -> Result<T, ValidationError>;
}

impl<T> OrRefuse<T> for Option<T> {
    fn or_refuse(self, field: &str, figure: &str) -> Result<T, ValidationError> {
        self.ok_or_else(|| ValidationError::new(field, format!("applying it would overflow {figure}")))
    }
}
