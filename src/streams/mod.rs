//! Redis streams: how an accepted event is stored, how workers read it, and
//! where deliveries wait to be tried again.
//!
//! # Layout
//!
//! Organizations are spread over `TRIGGERS_STREAM_SHARDS` shards; every key
//! of a shard carries its hash tag (`<prefix>:{<shard>}:...`), so each script
//! touches one Redis Cluster slot. Per shard:
//!
//! * `events` — the events accepted for its organizations;
//! * `unarchived` — event id → entry id for events not in Postgres yet
//!   ([`Unarchived`]);
//! * `redeliver` — due retries and replays; `retry` and `retry-data` — the
//!   retries waiting for their time; `dead` — deliveries given up on
//!   ([`RetryQueue`]).
//!
//! Every entry of every stream is written and read by one codec,
//! [`StreamEntry`].
//!
//! # Accepting
//!
//! [`Intake`] runs the rate limit, the 24 h dedup check, `XADD` and the
//! index update as one script: either all happen or the event is refused.
//! The API answers 202 only after the script returned, i.e. once Redis holds
//! the entry (with AOF on, it survives a Redis restart too).
//!
//! # Consuming
//!
//! Every kind of worker has its own consumer group on the shard streams it
//! reads (`archive`, `delivery`), and each process its own consumer name
//! (`<host or pod>-<pid>`) so `XPENDING` shows who holds what. A
//! [`Consumer`] reads entries with `XREADGROUP`, acknowledges them with
//! `XACK` only after their work is durable, and takes over entries idle
//! longer than the visibility timeout in the pending list of a consumer that
//! died (`XAUTOCLAIM`). Streams are trimmed (`XTRIM MINID`) only below the
//! oldest entry some group has not acknowledged, so no group ever misses an
//! entry.

mod consumer;
mod entry;
mod intake;
mod retries;
mod unarchived;

pub use consumer::{Consumer, Received, StreamKind};
pub use entry::StreamEntry;
pub use intake::{Admission, Intake};
pub use retries::RetryQueue;
pub use unarchived::Unarchived;
