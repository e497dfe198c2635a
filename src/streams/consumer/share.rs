//! How one read shares its room among the streams it reads.
//!
//! `XREADGROUP`'s `COUNT` bounds each stream, not the reply, so a read of
//! `count` entries over every stream at once could return `count` times as
//! many. A read is planned in rounds instead, each bounded by what is left:
//!
//! * The first round gives every stream an equal share (`count / streams`),
//!   which keeps a busy shard from starving the others, and on one node is
//!   still a single (blocking) command. With less room than streams, it reads
//!   `count` streams in turn, one entry each, so every stream gets its turn.
//! * A stream that filled its share may hold more: up to two further rounds
//!   share what is left among such streams, so one busy shard still fills a
//!   batch (the archiver's inserts depend on batch size). A remainder too
//!   small to give each of them one more entry is not worth a command.

use super::StreamKind;

/// Further rounds after the first, at most.
pub(super) const TOP_UPS: usize = 2;

/// Which streams (indexes into the consumer's list) one round reads, and
/// how many entries each may return: never more than the round's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Round {
    pub streams: Vec<usize>,
    pub each: u64,
}

impl Round {
    /// The first round of a read of `count` (≥ 1) entries over `streams`
    /// streams, starting at stream `turn`.
    pub fn first(count: u64, streams: usize, turn: usize) -> Self {
        let order = (0..streams).map(|i| (turn + i) % streams);
        let each = count / streams.max(1) as u64;
        if each == 0 {
            Round {
                streams: order.take(count as usize).collect(),
                each: 1,
            }
        } else {
            Round {
                streams: order.collect(),
                each,
            }
        }
    }

    /// A further round sharing `left` among the streams that filled their
    /// share; `None` when there is not one more entry for each of them.
    pub fn top_up(left: u64, full: &[usize]) -> Option<Self> {
        let each = left / full.len().max(1) as u64;
        if each == 0 || full.is_empty() {
            return None;
        }
        Some(Round {
            streams: full.to_vec(),
            each,
        })
    }

    /// The most entries this round may return.
    #[cfg(test)]
    pub fn room(&self) -> u64 {
        self.each * self.streams.len() as u64
    }
}

/// Streams by shard (one Cluster slot each), keeping the order of first
/// appearance.
pub(super) fn group_streams<'a>(
    streams: impl Iterator<Item = &'a (u16, StreamKind, String)>,
) -> Vec<(u16, Vec<&'a str>)> {
    let mut groups: Vec<(u16, Vec<&str>)> = Vec::new();
    for (shard, _, stream) in streams {
        match groups.iter_mut().find(|(s, _)| s == shard) {
            Some((_, names)) => names.push(stream.as_str()),
            None => groups.push((*shard, vec![stream.as_str()])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_never_has_more_room_than_the_read() {
        for streams in 1..=20 {
            for count in 1..=50 {
                for turn in 0..streams {
                    let first = Round::first(count, streams, turn);
                    assert!(first.room() <= count, "{count} over {streams}: {first:?}");
                    assert!(first.room() >= 1);
                    for full in 1..=streams {
                        let ids: Vec<usize> = (0..full).collect();
                        for left in 1..=count {
                            if let Some(round) = Round::top_up(left, &ids) {
                                assert!(round.room() <= left, "{left} over {full}: {round:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_stream_gets_a_share_or_its_turn() {
        let round = Round::first(20, 8, 3);
        assert_eq!(round.each, 2);
        assert_eq!(round.streams, [3, 4, 5, 6, 7, 0, 1, 2]);
        // Less room than streams: successive turns cover them all.
        let mut seen = [false; 8];
        let mut turn = 0;
        for _ in 0..3 {
            let round = Round::first(3, 8, turn);
            assert_eq!(round.each, 1);
            assert_eq!(round.streams.len(), 3);
            round.streams.iter().for_each(|&s| seen[s] = true);
            turn += 3;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    #[test]
    fn what_is_left_goes_to_the_streams_that_may_hold_more() {
        assert_eq!(
            Round::top_up(97, &[5]),
            Some(Round {
                streams: vec![5],
                each: 97
            })
        );
        assert_eq!(
            Round::top_up(7, &[1, 4, 6]),
            Some(Round {
                streams: vec![1, 4, 6],
                each: 2
            })
        );
        assert_eq!(Round::top_up(2, &[1, 4, 6]), None);
        assert_eq!(Round::top_up(0, &[1]), None);
        assert_eq!(Round::top_up(5, &[]), None);
    }
}
