//! Label values of the counters whose values are all known up front.
//!
//! Each set is an enum bound to its metric and label name, so a call site
//! cannot write a value the catalogue does not start at zero, nor put it on
//! another metric; the catalogue registers every value from the same enum.

use super::{AUTH_KEY_HASHES, AUTH_LOOKUPS, AUTH_REFUSED, DELIVERIES, EVENTS_REJECTED};

/// The values of one counter's one label.
pub trait CounterLabel: Copy + Sized + 'static {
    /// The counter this label belongs to.
    const METRIC: &'static str;
    /// The label's name.
    const LABEL: &'static str;
    /// Every value, each started at zero.
    const ALL: &'static [Self];

    fn as_str(self) -> &'static str;

    /// Counts one occurrence.
    fn count(self) {
        metrics::counter!(Self::METRIC, Self::LABEL => self.as_str()).increment(1);
    }

    /// Registers every value at zero, so `rate()` sees each first increment.
    fn start_at_zero() {
        for value in Self::ALL {
            metrics::counter!(Self::METRIC, Self::LABEL => value.as_str()).increment(0);
        }
    }
}

macro_rules! counter_label {
    (
        $(#[$doc:meta])*
        $name:ident on $metric:ident . $label:literal {
            $($(#[$vdoc:meta])* $variant:ident => $value:literal),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl CounterLabel for $name {
            const METRIC: &'static str = $metric;
            const LABEL: &'static str = $label;
            const ALL: &'static [Self] = &[$(Self::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value),+
                }
            }
        }
    };
}

counter_label! {
    /// Why an ingested event was refused.
    Rejected on EVENTS_REJECTED."reason" {
        Invalid => "invalid",
        TooLarge => "too_large",
        Duplicate => "duplicate",
        RateLimited => "rate_limited",
    }
}

counter_label! {
    /// Where a presented API key was found.
    LookupSource on AUTH_LOOKUPS."source" {
        Memory => "memory",
        Redis => "redis",
        /// Only when Postgres was actually queried.
        Database => "database",
    }
}

counter_label! {
    /// Why argon2 ran.
    HashPurpose on AUTH_KEY_HASHES."purpose" {
        Verify => "verify",
        Generate => "generate",
    }
}

counter_label! {
    /// Why a key was refused without being verified.
    AuthRefused on AUTH_REFUSED."reason" {
        Busy => "busy",
        PrefixFailures => "prefix_failures",
        AddressFailures => "address_failures",
    }
}

counter_label! {
    /// What became of a delivery attempt.
    DeliveryOutcome on DELIVERIES."outcome" {
        Delivered => "delivered",
        Retry => "retry",
        DeadLetter => "dead_letter",
        /// 410: dead-lettered, and the webhook disabled.
        Gone => "gone",
    }
}

/// Starts every known label value of every labelled counter at zero; the
/// metrics this covers are the ones [`is_labelled`] names.
pub(super) fn start_at_zero() {
    for start in LABELLED.iter().map(|(_, start)| start) {
        start();
    }
}

/// Whether `metric` is a counter started by [`start_at_zero`].
pub(super) fn is_labelled(metric: &str) -> bool {
    LABELLED.iter().any(|(name, _)| *name == metric)
}

const LABELLED: &[(&str, fn())] = &[
    (Rejected::METRIC, Rejected::start_at_zero),
    (LookupSource::METRIC, LookupSource::start_at_zero),
    (HashPurpose::METRIC, HashPurpose::start_at_zero),
    (AuthRefused::METRIC, AuthRefused::start_at_zero),
    (DeliveryOutcome::METRIC, DeliveryOutcome::start_at_zero),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{
        builder,
        catalogue::{CATALOGUE, Kind},
    };

    #[test]
    fn every_label_set_belongs_to_a_catalogued_counter() {
        for (metric, _) in LABELLED {
            assert!(
                CATALOGUE
                    .iter()
                    .any(|&(name, kind, _)| name == *metric && kind == Kind::Counter),
                "{metric} is not a catalogued counter"
            );
        }
    }

    #[test]
    fn every_value_of_every_label_is_scraped_at_zero() {
        fn expected<L: CounterLabel>() -> Vec<String> {
            L::ALL
                .iter()
                .map(|v| format!(r#"{}{{{}="{}"}} 0"#, L::METRIC, L::LABEL, v.as_str()))
                .collect()
        }
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, start_at_zero);
        let scrape = handle.render();
        let every = [
            expected::<Rejected>(),
            expected::<LookupSource>(),
            expected::<HashPurpose>(),
            expected::<AuthRefused>(),
            expected::<DeliveryOutcome>(),
        ];
        for line in every.iter().flatten() {
            assert!(scrape.contains(line), "no `{line}` in:\n{scrape}");
        }
        assert_eq!(
            every.len(),
            LABELLED.len(),
            "a label set is not checked here"
        );
    }
}
