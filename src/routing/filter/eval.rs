//! Matching a compiled filter: walks borrowed JSON, allocates nothing.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::{Bound, Comparison, FieldPath, Node, Op, Root};

/// The value a field path reaches: the event type is a plain `&str`, so the
/// wrapper object `{"type", "payload"}` never has to exist.
#[derive(Clone, Copy)]
enum Found<'a> {
    Type(&'a str),
    Json(&'a Value),
}

impl Node {
    pub(super) fn holds(&self, event_type: &str, payload: &Value) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|n| n.holds(event_type, payload)),
            Node::Any(nodes) => nodes.iter().any(|n| n.holds(event_type, payload)),
            Node::Not(node) => !node.holds(event_type, payload),
            Node::Field(path, ops) => {
                let found = path.resolve(event_type, payload);
                ops.iter().all(|op| op.holds(found))
            }
        }
    }
}

impl FieldPath {
    fn resolve<'a>(&self, event_type: &'a str, payload: &'a Value) -> Option<Found<'a>> {
        if self.root == Root::Type {
            // Compilation refuses segments after `type`.
            return Some(Found::Type(event_type));
        }
        let mut current = payload;
        for segment in &self.segments {
            current = match current {
                Value::Object(map) => map.get(&*segment.key)?,
                Value::Array(items) => items.get(segment.index?)?,
                _ => return None,
            };
        }
        Some(Found::Json(current))
    }
}

impl Op {
    fn holds(&self, found: Option<Found<'_>>) -> bool {
        let Some(found) = found else {
            return matches!(self, Op::Exists(false) | Op::Ne(_) | Op::Nin(_));
        };
        match self {
            Op::Eq(literal) => found.equals(literal),
            Op::Ne(literal) => !found.equals(literal),
            Op::In(literals) => literals.iter().any(|l| found.equals(l)),
            Op::Nin(literals) => !literals.iter().any(|l| found.equals(l)),
            Op::Exists(wanted) => *wanted,
            Op::Compare(comparison, bound) => {
                let ordering = match (found, bound) {
                    (found, Bound::Str(bound)) => found.as_str().map(|s| s.cmp(bound)),
                    (Found::Json(Value::Number(n)), Bound::Number(bound)) => {
                        compare_numbers(n, bound)
                    }
                    _ => None,
                };
                ordering.is_some_and(|o| comparison.accepts(o))
            }
            Op::Prefix(prefix) => found.as_str().is_some_and(|s| s.starts_with(&**prefix)),
        }
    }
}

impl Found<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Found::Type(s) => Some(s),
            Found::Json(Value::String(s)) => Some(s),
            Found::Json(_) => None,
        }
    }

    fn equals(&self, literal: &Value) -> bool {
        match self {
            Found::Type(s) => literal.as_str() == Some(*s),
            Found::Json(value) => json_equal(value, literal),
        }
    }
}

impl Comparison {
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Gt => ordering.is_gt(),
            Comparison::Gte => ordering.is_ge(),
            Comparison::Lt => ordering.is_lt(),
            Comparison::Lte => ordering.is_le(),
        }
    }
}

/// JSON equality with numbers compared by value, so `1` equals `1.0`
/// (serde_json's own `==` tells integers and floats apart).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_equal(x, y)))
        }
        _ => a == b,
    }
}

/// Integers compare exactly (beyond 2^53 a double would not); anything with
/// a fraction or exponent compares as a double.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}
