//! Payload filters: a small JSON query language over an event seen as
//! `{"type": …, "payload": {…}}`, compiled once into a typed tree and
//! matched against `(type, payload)` without building that wrapper.
//!
//! The language (an endpoint's `filter` field):
//! - Keys are dot-separated field paths starting with `type` or `payload`
//!   (`payload.customer.country`); a segment of decimal digits indexes an
//!   array (`payload.items.0.sku`), and on an object is a key like any other.
//!   `type` is the event type, a string without fields; `payload` alone is
//!   the whole payload. A key containing a dot cannot be addressed.
//! - A value is a literal (JSON equality) or an object of operators:
//!   `$eq $ne $gt $gte $lt $lte $in $nin $exists $prefix`. Several keys in
//!   one object must all hold; `$and` / `$or` take a non-empty array of
//!   filters, `$not` one filter.
//! - A missing field satisfies only `$exists: false`, `$ne` and `$nin`.
//!
//! Choices the contract leaves open, made here:
//! - An object value whose keys all start with `$` is an object of
//!   operators; one with no `$` key is a literal: `{"payload.customer":
//!   {"country": "DE"}}` holds when the customer equals `{"country": "DE"}`
//!   exactly. An object mixing both is refused, since either reading would
//!   silently drop half of it. `$eq`'s operand is always a literal, so an
//!   object with `$` keys can still be compared with.
//! - Equality is JSON equality with numbers by value (`1 == 1.0`); arrays
//!   compare element by element, objects key by key in any order. An array
//!   is not searched: `{"payload.tags": "a"}` does not match `["a"]`.
//! - `$gt $gte $lt $lte` compare numbers with numbers and strings with
//!   strings (by code point); against any other kind they are false, as is
//!   `$prefix` against anything but a string.
//! - Depth counts filters, not JSON brackets: the top-level filter is level
//!   1, each filter inside `$and`, `$or` or `$not` one level below the one
//!   holding it, at most 5. Operator objects and literals are leaves and add
//!   no level (the size limit bounds them). Counting brackets would refuse
//!   `{"$or": [{"$and": [{"payload.a": {"$gte": 1}}]}]}` — two boolean
//!   levels — which is not what a depth limit is for: it bounds recursion.
//! - Size is the compact serialization (`serde_json::to_string`), at most
//!   4096 bytes. No string or key may contain NUL (Postgres cannot store it).
//! - `{}` holds for every event; `$in: []` never holds, `$nin: []` always.

mod compile;
mod eval;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use super::RoutingError;

/// Longest filter, in bytes of compact JSON.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of filters (see the module comment for what counts).
pub const MAX_FILTER_DEPTH: usize = 5;

/// A compiled filter with the JSON it was compiled from, which is what it
/// serializes back to.
#[derive(Debug, Clone)]
pub struct Filter {
    source: Value,
    root: Node,
}

impl Filter {
    /// Compiles the `filter` field; an error names the offending path,
    /// e.g. `filter.payload.amount.$gt: expected a number or string`.
    pub fn compile(source: &Value) -> Result<Self, RoutingError> {
        let root = compile::filter(source)?;
        Ok(Self {
            source: source.clone(),
            root,
        })
    }

    /// Whether the event `{"type": event_type, "payload": payload}` passes.
    pub fn matches(&self, event_type: &str, payload: &Value) -> bool {
        self.root.holds(event_type, payload)
    }

    /// The filter as the user gave it.
    pub fn as_json(&self) -> &Value {
        &self.source
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = Value::deserialize(deserializer)?;
        Self::compile(&source).map_err(serde::de::Error::custom)
    }
}

/// One filter object, compiled.
#[derive(Debug, Clone)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    /// Conditions on one field; all must hold.
    Field(FieldPath, Vec<Op>),
}

#[derive(Debug, Clone)]
struct FieldPath {
    root: Root,
    segments: Box<[Segment]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Type,
    Payload,
}

#[derive(Debug, Clone)]
struct Segment {
    key: Box<str>,
    /// The key read as an array index, when it is one.
    index: Option<usize>,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Ne(Value),
    Compare(Comparison, Bound),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Prefix(Box<str>),
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
enum Bound {
    Number(Number),
    Str(Box<str>),
}
