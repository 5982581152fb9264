//! The event catalog: every event type the plugin accepts.

/// One event type.
#[derive(Debug, Clone, Copy)]
pub struct EventType {
    pub name: &'static str,
    pub category: &'static str,
    pub description: &'static str,
}

/// The event sent by "Send test"; not subscribable, always delivered to the
/// one webhook being tested.
pub const TEST_EVENT: &str = "test.webhook";

/// Every event type, in the order the admin form shows them.
pub const EVENTS: &[EventType] = &[
    EventType { name: "user.created", category: "User", description: "A user account was created." },
    EventType { name: "user.updated", category: "User", description: "A user's profile or settings changed." },
    EventType { name: "user.deleted", category: "User", description: "A user account was deleted." },
    EventType { name: "server.created", category: "Server", description: "A server was provisioned." },
    EventType { name: "server.deleted", category: "Server", description: "A server was removed." },
    EventType { name: "transaction.created", category: "Transaction", description: "A payment was started." },
    EventType { name: "transaction.success", category: "Transaction", description: "A payment succeeded." },
    EventType { name: "transaction.failed", category: "Transaction", description: "A payment failed." },
    EventType { name: "transaction.refunded", category: "Transaction", description: "A payment was refunded." },
    EventType { name: "ticket.created", category: "Ticket", description: "A support ticket was opened." },
    EventType { name: "ticket.closed", category: "Ticket", description: "A support ticket was closed." },
    EventType { name: "ticket.reopened", category: "Ticket", description: "A closed support ticket was reopened." },
    EventType { name: TEST_EVENT, category: "Test", description: "Sent by \"Send test\" to check an endpoint." },
];

/// Categories in display order.
pub const CATEGORIES: &[&str] = &["User", "Server", "Transaction", "Ticket"];

/// Looks an event type up by name.
pub fn find(name: &str) -> Option<&'static EventType> {
    EVENTS.iter().find(|e| e.name == name)
}

/// Whether admins can subscribe a webhook to this type.
pub fn is_subscribable(name: &str) -> bool {
    name != TEST_EVENT && find(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_every_issue_event_once() {
        let names: Vec<_> = EVENTS.iter().map(|e| e.name).collect();
        for n in [
            "user.created",
            "user.updated",
            "user.deleted",
            "server.created",
            "server.deleted",
            "transaction.created",
            "transaction.success",
            "transaction.failed",
            "transaction.refunded",
            "ticket.created",
            "ticket.closed",
            "ticket.reopened",
            "test.webhook",
        ] {
            assert_eq!(names.iter().filter(|x| **x == n).count(), 1, "{n}");
        }
        assert_eq!(names.len(), 13);
        for e in EVENTS.iter().filter(|e| e.name != TEST_EVENT) {
            assert!(CATEGORIES.contains(&e.category), "{}", e.name);
        }
    }

    #[test]
    fn test_event_is_not_subscribable() {
        assert!(!is_subscribable(TEST_EVENT));
        assert!(is_subscribable("user.created"));
        assert!(!is_subscribable("user.exploded"));
    }
}
