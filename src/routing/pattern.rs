//! Event-type patterns: which event types an endpoint subscribes to.
//!
//! A pattern is an exact type (`invoice.paid`), a prefix ending in `.*`
//! (`invoice.*`: every type beginning with `invoice.`, at any depth), or `*`
//! alone. A pattern is held to the rules of an event type (not blank, at
//! most 255 characters, no NUL), and the prefix of a `.*` pattern to them
//! too, so `.*` selects nothing a plain type could not name.

use serde::{Deserialize, Serialize};

use super::RoutingError;
use crate::domain::{MAX_NAME_CHARS, contains_nul, is_event_type};

/// Most patterns one endpoint may list.
pub const MAX_PATTERNS: usize = 50;

/// One event-type pattern, kept as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: Box<str>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Any,
    Exact,
    /// `source` minus its final `*`: the prefix keeps its dot, so matching
    /// is one `starts_with` and `invoice.*` never matches `invoices.x`.
    Prefix,
}

impl Pattern {
    /// Parses one pattern; the error's message does not name a path, the
    /// caller knows where the pattern came from.
    pub fn parse(text: &str) -> Result<Self, String> {
        if contains_nul(text) {
            return Err("may not contain the NUL character (U+0000)".into());
        }
        if !is_event_type(text) {
            return Err(format!(
                "must be a non-empty string of at most {MAX_NAME_CHARS} characters"
            ));
        }
        let kind = if text == "*" {
            Kind::Any
        } else if let Some(prefix) = text.strip_suffix(".*") {
            if prefix.contains('*') {
                return Err(star_message(text));
            }
            if !is_event_type(prefix) {
                return Err("the prefix before `.*` must not be blank".into());
            }
            Kind::Prefix
        } else if text.contains('*') {
            return Err(star_message(text));
        } else {
            Kind::Exact
        };
        Ok(Self {
            source: text.into(),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self.kind {
            Kind::Any => true,
            Kind::Exact => *self.source == *event_type,
            Kind::Prefix => event_type.starts_with(&self.source[..self.source.len() - 1]),
        }
    }
}

fn star_message(text: &str) -> String {
    format!(
        "`{text}`: `*` may appear only alone or as a final `.*` (e.g. `invoice.*`), \
         not elsewhere in a pattern"
    )
}

/// The patterns of one endpoint. Empty means every type: absent, `null` and
/// `[]` are all read that way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypes {
    patterns: Vec<Pattern>,
}

impl EventTypes {
    /// Every event type.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses a list as given in the `event_types` field; an error names the
    /// offending entry, e.g. `event_types[3]: …`.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, RoutingError> {
        if patterns.len() > MAX_PATTERNS {
            return Err(RoutingError::new(
                "event_types",
                format!("at most {MAX_PATTERNS} patterns, got {}", patterns.len()),
            ));
        }
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Pattern::parse(p.as_ref())
                    .map_err(|message| RoutingError::new(format!("event_types[{i}]"), message))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether every type is selected (no patterns listed).
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn matches(&self, event_type: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(event_type))
    }
}

impl Serialize for EventTypes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.patterns.iter().map(Pattern::as_str))
    }
}

impl<'de> Deserialize<'de> for EventTypes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let patterns = Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default();
        Self::parse(&patterns).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn a_prefix_pattern_matches_its_subtree_at_any_depth_and_nothing_else() {
        let p = pattern("invoice.*");
        assert!(p.matches("invoice.paid"));
        assert!(p.matches("invoice.line.added"));
        assert!(!p.matches("invoice"));
        assert!(!p.matches("invoices.x"));
        assert!(!p.matches("customer.invoice.paid"));
        assert!(!p.matches("Invoice.paid"));
        let deep = pattern("a.b.*");
        assert!(deep.matches("a.b.c.d"));
        assert!(!deep.matches("a.bc"));
        assert!(!deep.matches("a.b"));
    }

    #[test]
    fn an_exact_pattern_matches_only_its_type() {
        let p = pattern("invoice.paid");
        assert!(p.matches("invoice.paid"));
        assert!(!p.matches("invoice.paid.late"));
        assert!(!p.matches("invoice.pai"));
        assert!(!p.matches("invoice"));
    }

    #[test]
    fn a_lone_star_matches_every_type() {
        let p = pattern("*");
        assert!(p.matches("anything"));
        assert!(p.matches("a.b.c"));
    }

    #[test]
    fn a_star_anywhere_but_alone_or_final_is_refused() {
        for bad in [
            "a.*.b",
            "*.x",
            "invoice*",
            "invoice.**",
            "a.*.*",
            "**",
            "*a",
            "a*b",
        ] {
            let err = Pattern::parse(bad).expect_err(bad);
            assert!(err.contains("`*`"), "{bad}: {err}");
        }
    }

    #[test]
    fn patterns_follow_the_rules_of_event_types() {
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("   ").is_err());
        assert!(Pattern::parse(".*").is_err());
        assert!(Pattern::parse(" .*").is_err());
        assert!(Pattern::parse("a\0b").is_err());
        let longest = "x".repeat(MAX_NAME_CHARS);
        assert!(Pattern::parse(&longest).is_ok());
        assert!(Pattern::parse(&format!("{longest}y")).is_err());
        let longest_prefix = format!("{}.*", "x".repeat(MAX_NAME_CHARS - 2));
        assert!(Pattern::parse(&longest_prefix).is_ok());
        // Characters count, not bytes, as for event types.
        assert!(Pattern::parse(&"é".repeat(MAX_NAME_CHARS)).is_ok());
    }

    #[test]
    fn no_patterns_means_every_type() {
        let none: [&str; 0] = [];
        assert!(EventTypes::parse(&none).expect("empty").matches("x.y"));
        assert!(EventTypes::all().is_all());
        let from_null: EventTypes = serde_json::from_str("null").expect("null");
        assert!(from_null.is_all());
        let from_empty: EventTypes = serde_json::from_str("[]").expect("[]");
        assert!(from_empty.matches("anything"));
    }

    #[test]
    fn a_list_matches_when_any_pattern_does() {
        let types = EventTypes::parse(&["invoice.*", "customer.created"]).expect("valid");
        assert!(types.matches("invoice.paid"));
        assert!(types.matches("customer.created"));
        assert!(!types.matches("customer.deleted"));
        assert!(!types.is_all());
    }

    #[test]
    fn errors_name_the_offending_entry() {
        let err = EventTypes::parse(&["a", "b", "c", "a.*.b"]).expect_err("invalid");
        assert_eq!(err.path, "event_types[3]");
        assert!(err.to_string().starts_with("event_types[3]: "), "{err}");
        let err = serde_json::from_str::<EventTypes>(r#"["ok", ""]"#).expect_err("invalid");
        assert!(err.to_string().contains("event_types[1]: "), "{err}");
    }

    #[test]
    fn at_most_fifty_patterns() {
        let fifty: Vec<String> = (0..MAX_PATTERNS).map(|i| format!("t{i}")).collect();
        assert!(EventTypes::parse(&fifty).is_ok());
        let mut fifty_one = fifty;
        fifty_one.push("t50".into());
        let err = EventTypes::parse(&fifty_one).expect_err("51 patterns");
        assert_eq!(err.path, "event_types");
    }

    #[test]
    fn patterns_serialize_as_given() {
        let json = r#"["invoice.*","*","customer.created"]"#;
        let types: EventTypes = serde_json::from_str(json).expect("valid");
        assert_eq!(serde_json::to_string(&types).expect("serializes"), json);
    }
}
