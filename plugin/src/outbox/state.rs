//! The states a delivery moves through, as one type for the store, the
//! pipeline, the pages and the API.
//!
//! ```text
//! pending ──attempt──▶ succeeded
//!    │                    ▲
//!    └──failed──▶ retrying ─┘ … ──schedule spent / 410 / one-off──▶ exhausted
//!
//! pending | retrying ──the webhook's transformation skips it──▶ skipped
//! ```
//! Resend and "retry failed since" put a finished delivery back to `retrying`.
//! `skipped` (#24) is final and neither a success nor a failure: nothing
//! was sent, because the webhook's transformation said it was not for that
//! receiver. A resend runs the transformation again.

use std::fmt;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Queued, never attempted.
    Pending,
    /// Failed at least once; another attempt is scheduled.
    Retrying,
    /// A receiver answered 2xx.
    Succeeded,
    /// Failed for the last time (schedule spent, 410 Gone, or a one-off send).
    Exhausted,
    /// Not sent: the webhook's transformation skipped it (#24).
    Skipped,
}

impl DeliveryState {
    /// Every state, in lifecycle order.
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::Retrying,
        DeliveryState::Succeeded,
        DeliveryState::Exhausted,
        DeliveryState::Skipped,
    ];

    /// The stored (and API) name.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Exhausted => "exhausted",
            DeliveryState::Skipped => "skipped",
        }
    }

    /// Parses a stored name. An unknown name (a row written by a newer
    /// version) reads as `exhausted`: never sent again, still shown.
    pub fn from_stored(s: &str) -> DeliveryState {
        DeliveryState::parse(s).unwrap_or(DeliveryState::Exhausted)
    }

    /// Parses a name from a filter or a row.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Still waiting for an attempt (has a due time).
    pub const fn is_waiting(self) -> bool {
        matches!(self, DeliveryState::Pending | DeliveryState::Retrying)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DeliveryState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for st in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(st.as_str()), Some(st));
        }
        assert_eq!(DeliveryState::parse("gone"), None);
        assert_eq!(DeliveryState::from_stored("gone"), DeliveryState::Exhausted);
        assert!(DeliveryState::Pending.is_waiting() && DeliveryState::Retrying.is_waiting());
        assert!(!DeliveryState::Succeeded.is_waiting() && !DeliveryState::Exhausted.is_waiting());
        assert!(!DeliveryState::Skipped.is_waiting());
    }
}
