//! How the command line prints: a table for people, JSON for scripts, both
//! from the same value.

use std::io::{ErrorKind, Write};

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// A command's result: its JSON is how it serializes, its table these
/// headers and rows.
pub trait Report: Serialize {
    const HEADERS: &'static [&'static str];

    /// The table rows showing this value (one for most).
    fn rows(&self) -> Vec<Vec<String>>;
}

/// A list prints as a JSON array, and as one table of every item's rows.
impl<T: Report> Report for Vec<T> {
    const HEADERS: &'static [&'static str] = T::HEADERS;

    fn rows(&self) -> Vec<Vec<String>> {
        self.iter().flat_map(Report::rows).collect()
    }
}

pub fn print<R: Report>(report: &R, json: bool) -> Result<(), std::io::Error> {
    let text = if json {
        serde_json::to_string_pretty(report)?
    } else {
        table(R::HEADERS, report.rows()).to_string()
    };
    match writeln!(std::io::stdout().lock(), "{text}") {
        // The reader went away (`| head`): nothing left to say to it.
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    table
}

/// An optional value, as a table cell.
pub fn cell<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// One row per field of `value`'s JSON object, for records with more
/// fields than a table is wide: strings as they are, null as `-`, anything
/// else as compact JSON.
pub fn field_rows<T: Serialize>(value: &T) -> Vec<Vec<String>> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(value) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .map(|(field, value)| {
            let shown = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            vec![field, shown]
        })
        .collect()
}
