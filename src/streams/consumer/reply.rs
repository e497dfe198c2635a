//! Replies of the stream commands, parsed into entries.

use std::collections::HashMap;

use fred::prelude::Value;

use super::{Received, StreamKind};
use crate::{redis::RedisError, streams::StreamEntry};

pub(super) fn push_parsed(
    out: &mut Vec<Received>,
    (shard, kind, stream): (u16, StreamKind, &str),
    entry_id: &str,
    fields: &HashMap<String, String>,
) {
    match StreamEntry::decode(fields) {
        Ok(entry) => out.push(Received {
            shard,
            stream: stream.to_owned(),
            kind,
            entry_id: entry_id.to_owned(),
            entry,
        }),
        // Left pending, never acknowledged: it stays visible in XPENDING
        // for an operator instead of being dropped.
        Err(err) => {
            tracing::error!(shard, stream, entry_id, error = %err, "unreadable stream entry")
        }
    }
}

pub(super) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

pub(super) type Entry = (String, HashMap<String, String>);

/// `XAUTOCLAIM`'s reply: `[next cursor, [[id, [field, value, ...]], ...], deleted ids]`
/// (Redis 7; entries deleted meanwhile are left out by the server).
pub(super) fn parse_autoclaim(reply: Value) -> Result<(String, Vec<Entry>), RedisError> {
    let bad = || RedisError::Reply("malformed XAUTOCLAIM reply".into());
    let mut parts = reply.into_array().into_iter();
    let next = parts.next().and_then(|v| v.as_string()).ok_or_else(bad)?;
    Ok((next, parts.next().map(parse_entries).unwrap_or_default()))
}

/// `[[id, [field, value, ...]], ...]`; entries deleted meanwhile (nil) are skipped.
pub(super) fn parse_entries(entries: Value) -> Vec<Entry> {
    let mut out = Vec::new();
    if entries.is_null() {
        return out;
    }
    for raw in entries.into_array() {
        let mut pair = raw.into_array().into_iter();
        let (Some(id), Some(fields)) = (pair.next().and_then(|v| v.as_string()), pair.next())
        else {
            continue;
        };
        let flat = fields.into_array();
        let map = flat
            .chunks(2)
            .filter_map(|kv| Some((kv.first()?.as_string()?, kv.get(1)?.as_string()?)))
            .collect();
        out.push((id, map));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically_not_lexically() {
        assert!(parse_id("999-5") < parse_id("1000-0"));
        assert_eq!(parse_id("nonsense"), None);
    }
}
