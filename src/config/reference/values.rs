//! What a setting accepts, as far as clap itself knows it.
//!
//! Enumerations come from the value parser's possible values. Integer ranges
//! cannot be read back from clap (its ranged parsers keep them private), so
//! they are found by asking the argument itself which values it accepts: the
//! accepted values of an integer parser form one interval around the default,
//! and two binary searches find its ends. The reference therefore states
//! exactly what `serve` refuses at start, whatever the code says.

use std::{any::TypeId, net::SocketAddr, time::Duration};

use clap::{Arg, Command};

/// The "Values" cell of a setting, if there is anything to say.
pub(super) fn allowed(arg: &Arg) -> Option<String> {
    let listed = listed_values(arg);
    if listed.is_some() {
        return listed;
    }
    let type_id = arg.get_value_parser().type_id();
    if type_id == TypeId::of::<Duration>() {
        return Some("duration: `500ms`, `30s`, `10m`, `2h`, `7d`".to_owned());
    }
    if type_id == TypeId::of::<SocketAddr>() {
        return Some("IP address and port".to_owned());
    }
    integer_range(arg)
}

/// The possible values of an enumeration (or a boolean), with their help.
fn listed_values(arg: &Arg) -> Option<String> {
    let values: Vec<_> = arg
        .get_possible_values()
        .into_iter()
        .filter(|value| !value.is_hide_set())
        .collect();
    if values.is_empty() {
        return None;
    }
    let described = values.iter().any(|value| value.get_help().is_some());
    let items: Vec<String> = values
        .iter()
        .map(|value| match value.get_help().filter(|_| described) {
            Some(help) => format!(
                "`{}`: {}",
                value.get_name(),
                super::sentence(&help.to_string())
            ),
            None => format!("`{}`", value.get_name()),
        })
        .collect();
    Some(items.join(if described { "<br>" } else { ", " }))
}

/// The interval an integer setting accepts, e.g. `integer 1–1024`.
fn integer_range(arg: &Arg) -> Option<String> {
    let (type_min, type_max) = integer_type_bounds(arg)?;
    let long = arg.get_long()?;
    let default: i128 = arg.get_default_values().first()?.to_str()?.parse().ok()?;
    let accepts = |value: i128| {
        Command::new("probe")
            .arg(arg.clone().env(None::<&'static str>))
            .try_get_matches_from(["probe".to_owned(), format!("--{long}={value}")])
            .is_ok()
    };
    if !accepts(default) {
        return None;
    }
    let low = boundary(default, type_min - 1, &accepts);
    let high = boundary(default, type_max + 1, &accepts);
    // A type's own limit is no setting's limit, except 0 for unsigned ones.
    let has_low = low > type_min || type_min == 0;
    let has_high = high < type_max;
    Some(match (has_low, has_high) {
        (true, true) => format!("integer {low}–{high}"),
        (true, false) => format!("integer ≥ {low}"),
        (false, true) => format!("integer ≤ {high}"),
        (false, false) => "integer".to_owned(),
    })
}

/// The accepted value farthest from `accepted` towards `refused`, for a
/// predicate that holds on one interval containing `accepted`.
fn boundary(mut accepted: i128, mut refused: i128, accepts: &impl Fn(i128) -> bool) -> i128 {
    while (refused - accepted).abs() > 1 {
        let middle = accepted + (refused - accepted) / 2;
        if accepts(middle) {
            accepted = middle;
        } else {
            refused = middle;
        }
    }
    accepted
}

/// The smallest and largest value of the integer type a setting parses to.
fn integer_type_bounds(arg: &Arg) -> Option<(i128, i128)> {
    let type_id = arg.get_value_parser().type_id();
    macro_rules! bounds_of {
        ($($int:ty),*) => {
            $(
                if type_id == TypeId::of::<$int>() {
                    return Some((<$int>::MIN as i128, <$int>::MAX as i128));
                }
            )*
        };
    }
    bounds_of!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg_of(arg: Arg) -> Arg {
        // As a command holds it once built, with its value parser resolved.
        let mut command = Command::new("t").arg(arg);
        command.build();
        command
            .get_arguments()
            .next()
            .expect("one argument")
            .clone()
    }

    #[test]
    fn ranges_are_read_from_the_argument_itself() {
        let ranged = arg_of(
            Arg::new("n")
                .long("n")
                .default_value("4")
                .value_parser(clap::value_parser!(u16).range(1..=1024)),
        );
        assert_eq!(allowed(&ranged).as_deref(), Some("integer 1–1024"));
        let open = arg_of(
            Arg::new("n")
                .long("n")
                .default_value("500")
                .value_parser(clap::value_parser!(u64).range(1..)),
        );
        assert_eq!(allowed(&open).as_deref(), Some("integer ≥ 1"));
        let plain = arg_of(
            Arg::new("n")
                .long("n")
                .default_value("8")
                .value_parser(clap::value_parser!(usize)),
        );
        assert_eq!(allowed(&plain).as_deref(), Some("integer ≥ 0"));
        let signed = arg_of(
            Arg::new("n")
                .long("n")
                .default_value("-3")
                .value_parser(clap::value_parser!(i64).range(..=10)),
        );
        assert_eq!(allowed(&signed).as_deref(), Some("integer ≤ 10"));
    }
}
