//! UUIDv7 ids and the time inside them.
//!
//! An event's id starts with the unix time of its creation in milliseconds
//! (48 bits), so ids sort by time: the archive is partitioned by id ranges
//! of calendar months, retention deletes below the id of a cutoff time, and
//! `created_at` is read from the id rather than the clock again.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

/// Bits below the 48-bit millisecond timestamp.
const BELOW_MILLIS: u32 = 80;

/// A new event id and its creation time, which is the time inside the id,
/// so ordering by id and by `created_at` agree.
pub fn mint_event_id() -> (Uuid, DateTime<Utc>) {
    let id = Uuid::now_v7();
    (id, time_of(id).unwrap_or_else(Utc::now))
}

/// The millisecond an id was minted in, from its first 48 bits.
pub fn time_of(id: Uuid) -> Option<DateTime<Utc>> {
    let millis = i64::try_from(id.as_u128() >> BELOW_MILLIS).ok()?;
    Utc.timestamp_millis_opt(millis).single()
}

/// The smallest UUID of `at`'s millisecond, its time followed by zeros:
/// every id minted before `at`'s millisecond sorts below it, every id minted
/// during or after it at or above. Times before 1970 give the nil UUID.
pub fn first_id_at(at: DateTime<Utc>) -> Uuid {
    let millis = u128::try_from(at.timestamp_millis()).unwrap_or(0);
    Uuid::from_u128(millis << BELOW_MILLIS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_time_ordered_and_carry_their_time() {
        let (a, at) = mint_event_id();
        let (b, bt) = mint_event_id();
        assert!(a < b);
        assert!(at <= bt);
        assert!((Utc::now() - at).num_seconds().abs() < 5);
        assert_eq!(time_of(a), Some(at));
        assert_eq!(a.get_version_num(), 7);
    }

    #[test]
    fn the_first_id_of_a_millisecond_bounds_every_id_minted_in_it() {
        let (id, at) = mint_event_id();
        let first = first_id_at(at);
        assert!(first <= id);
        assert!(id < first_id_at(at + chrono::Duration::milliseconds(1)));
        assert_eq!(time_of(first), Some(at));
        let new_year = Utc
            .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        assert_eq!(
            first_id_at(new_year).to_string(),
            "01a2ce8b-d400-0000-0000-000000000000"
        );
        let before_1970 = Utc
            .with_ymd_and_hms(1969, 12, 31, 0, 0, 0)
            .single()
            .expect("date");
        assert_eq!(first_id_at(before_1970), Uuid::nil());
    }

    #[test]
    fn the_time_of_an_id_is_its_millisecond() {
        let last_ms_of_2026 = Utc
            .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
            .single()
            .expect("date")
            - chrono::Duration::milliseconds(1);
        let millis = u64::try_from(last_ms_of_2026.timestamp_millis()).expect("after 1970");
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &[0xff; 10]).into_uuid();
        assert_eq!(time_of(id), Some(last_ms_of_2026));
    }
}
