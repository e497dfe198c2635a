//! How the command line prints: a table for people, JSON for scripts.

use std::io::{ErrorKind, Write};

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// Rows of strings for the table, and the same data as JSON.
pub struct Report<T: Serialize> {
    pub headers: &'static [&'static str],
    pub rows: Vec<Vec<String>>,
    pub json: T,
}

pub fn print<T: Serialize>(report: Report<T>, json: bool) -> Result<(), std::io::Error> {
    let text = if json {
        serde_json::to_string_pretty(&report.json)?
    } else {
        table(report).to_string()
    };
    match writeln!(std::io::stdout().lock(), "{text}") {
        // The reader went away (`| head`): nothing left to say to it.
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn table<T: Serialize>(report: Report<T>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(report.headers.iter().copied());
    for row in report.rows {
        table.add_row(row);
    }
    table
}

/// An optional value, as a table cell.
pub fn cell<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
