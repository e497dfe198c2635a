//! From the JSON a user gave to a [`Node`] tree, refusing anything the
//! language does not define, with the path of the offending part.

use serde_json::{Map, Value};

use super::{
    Bound, Comparison, FieldPath, MAX_FILTER_BYTES, MAX_FILTER_DEPTH, Node, Op, Root, Segment,
};
use crate::{domain::contains_nul, routing::RoutingError};

type Result<T> = std::result::Result<T, RoutingError>;

const FIELD_OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $prefix";

pub(super) fn filter(source: &Value) -> Result<Node> {
    let size = serde_json::to_string(source).map_or(usize::MAX, |json| json.len());
    if size > MAX_FILTER_BYTES {
        return Err(RoutingError::new(
            "filter",
            format!("at most {MAX_FILTER_BYTES} bytes of JSON, got {size}"),
        ));
    }
    if let Some(path) = find_nul(source, "filter".into()) {
        return Err(RoutingError::new(
            path,
            "strings may not contain the NUL character (U+0000)",
        ));
    }
    object(source, "filter", 1)
}

/// One filter object at nesting level `depth`: its keys all must hold.
fn object(value: &Value, path: &str, depth: usize) -> Result<Node> {
    if depth > MAX_FILTER_DEPTH {
        return Err(RoutingError::new(
            path,
            format!("filters nest at most {MAX_FILTER_DEPTH} levels deep"),
        ));
    }
    let Value::Object(map) = value else {
        return Err(RoutingError::new(path, "expected an object (a filter)"));
    };
    let mut nodes = map
        .iter()
        .map(|(key, value)| match key.strip_prefix('$') {
            Some(_) => logical(key, value, path, depth),
            None => condition(key, value, path),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(if nodes.len() == 1 {
        nodes.remove(0)
    } else {
        Node::All(nodes)
    })
}

fn logical(key: &str, value: &Value, path: &str, depth: usize) -> Result<Node> {
    let here = format!("{path}.{key}");
    match key {
        "$and" | "$or" => {
            let filters = match value {
                Value::Array(items) if !items.is_empty() => items,
                _ => {
                    return Err(RoutingError::new(
                        here,
                        "expected a non-empty array of filters",
                    ));
                }
            };
            let nodes = filters
                .iter()
                .enumerate()
                .map(|(i, f)| object(f, &format!("{here}[{i}]"), depth + 1))
                .collect::<Result<Vec<_>>>()?;
            Ok(if key == "$and" {
                Node::All(nodes)
            } else {
                Node::Any(nodes)
            })
        }
        "$not" => Ok(Node::Not(Box::new(object(value, &here, depth + 1)?))),
        _ if is_field_operator(key) => Err(RoutingError::new(
            here,
            format!("`{key}` applies to a field: expected a field path, `$and`, `$or` or `$not`"),
        )),
        _ => Err(RoutingError::new(
            here,
            "unknown operator (at this level: a field path, `$and`, `$or` or `$not`)",
        )),
    }
}

/// `key: value` where `key` is a field path.
fn condition(key: &str, value: &Value, path: &str) -> Result<Node> {
    let here = format!("{path}.{key}");
    let field = field_path(key).map_err(|message| RoutingError::new(&here, message))?;
    let ops = match value {
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => operators(map, &here)?,
        literal => vec![Op::Eq(literal.clone())],
    };
    Ok(Node::Field(field, ops))
}

fn field_path(key: &str) -> std::result::Result<FieldPath, String> {
    let mut parts = key.split('.');
    let root = match parts.next() {
        Some("type") => Root::Type,
        Some("payload") => Root::Payload,
        _ => {
            return Err(
                "expected a field path starting with `type` or `payload` (e.g. `payload.customer.country`)"
                    .into(),
            );
        }
    };
    let segments = parts
        .map(|part| {
            if part.is_empty() {
                return Err("a field path may not have an empty segment".to_owned());
            }
            Ok(Segment {
                key: part.into(),
                index: array_index(part),
            })
        })
        .collect::<std::result::Result<Box<[_]>, _>>()?;
    if root == Root::Type && !segments.is_empty() {
        return Err("`type` is a string and has no fields".into());
    }
    Ok(FieldPath { root, segments })
}

/// Canonical decimal only: `01` or `+1` stay keys.
fn array_index(part: &str) -> Option<usize> {
    let canonical =
        part.bytes().all(|b| b.is_ascii_digit()) && (part == "0" || !part.starts_with('0'));
    if canonical { part.parse().ok() } else { None }
}

fn operators(map: &Map<String, Value>, path: &str) -> Result<Vec<Op>> {
    map.iter()
        .map(|(name, operand)| {
            let here = format!("{path}.{name}");
            if !name.starts_with('$') {
                return Err(RoutingError::new(
                    here,
                    "a field name among operators: an object is either all operators or a \
                     literal (compare with an object through `$eq`)",
                ));
            }
            operator(name, operand).map_err(|message| RoutingError::new(here, message))
        })
        .collect()
}

fn operator(name: &str, operand: &Value) -> std::result::Result<Op, String> {
    let comparison = match name {
        "$gt" => Some(Comparison::Gt),
        "$gte" => Some(Comparison::Gte),
        "$lt" => Some(Comparison::Lt),
        "$lte" => Some(Comparison::Lte),
        _ => None,
    };
    if let Some(comparison) = comparison {
        let bound = match operand {
            Value::Number(n) => Bound::Number(n.clone()),
            Value::String(s) => Bound::Str(s.as_str().into()),
            _ => return Err("expected a number or string".into()),
        };
        return Ok(Op::Compare(comparison, bound));
    }
    match (name, operand) {
        ("$eq", literal) => Ok(Op::Eq(literal.clone())),
        ("$ne", literal) => Ok(Op::Ne(literal.clone())),
        ("$in", Value::Array(items)) => Ok(Op::In(items.clone())),
        ("$nin", Value::Array(items)) => Ok(Op::Nin(items.clone())),
        ("$in" | "$nin", _) => Err("expected an array of values".into()),
        ("$exists", Value::Bool(wanted)) => Ok(Op::Exists(*wanted)),
        ("$exists", _) => Err("expected true or false".into()),
        ("$prefix", Value::String(prefix)) => Ok(Op::Prefix(prefix.as_str().into())),
        ("$prefix", _) => Err("expected a string".into()),
        ("$and" | "$or" | "$not", _) => Err(format!(
            "`{name}` combines filters: write it where a field path could be, not inside a field's operators"
        )),
        _ => Err(format!(
            "unknown operator (expected one of {FIELD_OPERATORS})"
        )),
    }
}

fn is_field_operator(name: &str) -> bool {
    FIELD_OPERATORS.split(", ").any(|op| op == name)
}

/// The path of the first string or key holding NUL, if any.
fn find_nul(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(s) if contains_nul(s) => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_nul(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let here = format!("{path}.{key}");
            if contains_nul(key) {
                Some(here)
            } else {
                find_nul(item, here)
            }
        }),
        _ => None,
    }
}
