//! Routing: which endpoints an event goes to, by its type and its payload.
//!
//! Pure code, no I/O. Patterns and filters are parsed once, when an endpoint
//! is configured (or loaded), into forms whose matching allocates nothing;
//! a worker parses an event's payload once and asks every endpoint's
//! [`Route`] about it.

pub mod filter;
pub mod pattern;

use serde_json::Value;

pub use filter::Filter;
pub use pattern::{EventTypes, Pattern};

/// An endpoint's routing input refused, with where: `path` names the field
/// (`event_types[3]`, `filter.payload.amount.$gt`), `message` says what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RoutingError {
    pub path: String,
    pub message: String,
}

impl RoutingError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// What one endpoint subscribes to: event types and, optionally, a payload
/// filter. Whether the endpoint is enabled is its own state, not routing's.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub event_types: EventTypes,
    pub filter: Option<Filter>,
}

impl Route {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses the `event_types` and `filter` fields as given (`None` for
    /// absent or `null`).
    pub fn parse<S: AsRef<str>>(
        event_types: Option<&[S]>,
        filter: Option<&Value>,
    ) -> Result<Self, RoutingError> {
        let event_types = match event_types {
            Some(patterns) => EventTypes::parse(patterns)?,
            None => EventTypes::all(),
        };
        let filter = filter.map(Filter::compile).transpose()?;
        Ok(Self {
            event_types,
            filter,
        })
    }

    /// Whether an event of this type and payload goes to the endpoint. The
    /// type is checked first: it needs no payload and rules most events out.
    pub fn matches(&self, event_type: &str, payload: &Value) -> bool {
        self.event_types.matches(event_type)
            && self
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(event_type, payload))
    }

    /// Whether deciding needs the payload at all: without a filter it does
    /// not, and a caller may skip parsing it.
    pub fn needs_payload(&self) -> bool {
        self.filter.is_some()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_route_needs_its_type_and_its_filter_to_hold() {
        let route = Route::parse(
            Some(&["customer.*"]),
            Some(&json!({"payload.customer.country": "DE"})),
        )
        .expect("valid");
        assert!(route.needs_payload());
        let de = json!({"customer": {"country": "DE"}});
        let fr = json!({"customer": {"country": "FR"}});
        assert!(route.matches("customer.created", &de));
        assert!(!route.matches("customer.created", &fr));
        assert!(!route.matches("invoice.paid", &de));
    }

    #[test]
    fn a_route_without_types_or_filter_takes_everything() {
        let route = Route::parse::<&str>(None, None).expect("valid");
        assert!(!route.needs_payload());
        assert!(route.matches("anything.at.all", &json!({})));
        assert!(Route::all().matches("x", &json!({"a": 1})));
    }

    #[test]
    fn errors_carry_the_path_of_either_field() {
        let err = Route::parse(Some(&["ok", "*.x"]), None).expect_err("bad pattern");
        assert_eq!(err.path, "event_types[1]");
        let err = Route::parse(Some(&["ok"]), Some(&json!({"payload.a": {"$gt": true}})))
            .expect_err("bad filter");
        assert_eq!(err.path, "filter.payload.a.$gt");
        assert_eq!(
            err.to_string(),
            "filter.payload.a.$gt: expected a number or string"
        );
    }
}
