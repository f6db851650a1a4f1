//! How the commands print: tables (comfy-table) for people, JSON for scripts, times as UTC
//! dates, and progress on stderr.
//!
//! A command that has both prints a table (or pretty JSON, for nested documents) when stdout
//! is a terminal, and its JSON when it is not, or with `--json`. `--table`, or
//! `CELLA_OUTPUT=table` in the environment, asks for the terminal's format anyway
//! (`CELLA_OUTPUT=json` for the JSON). Progress (a spinner) is drawn on stderr only when
//! stderr is a terminal.

use std::{io::IsTerminal, time::Duration};

use comfy_table::{Table, presets};
use indicatif::{ProgressBar, ProgressStyle};

/// The environment variable that picks the output format (`table` or `json`).
pub const OUTPUT_ENV: &str = "CELLA_OUTPUT";

/// Whether to print for people (a table) rather than JSON: not with `json`; with `table`;
/// otherwise as `CELLA_OUTPUT` says, else when stdout is a terminal.
pub(super) fn for_people(json: bool, table: bool) -> bool {
    if json {
        return false;
    }
    if table {
        return true;
    }
    match std::env::var(OUTPUT_ENV).ok().as_deref() {
        Some("table") => true,
        Some("json") => false,
        _ => std::io::stdout().is_terminal(),
    }
}

/// A table with `header`, borderless: columns separated by spaces, so that it reads well and
/// greps well.
pub(super) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().copied());
    table
}

/// Right-aligns the columns at `columns` (numbers).
pub(super) fn align_right(table: &mut Table, columns: &[usize]) {
    for &at in columns {
        if let Some(column) = table.column_mut(at) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
}

/// A table as text, each line without trailing blanks, ending with a newline.
pub(super) fn render(table: &Table) -> String {
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A time in milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(super) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A spinner saying `message` on stderr while a long operation runs, when stderr is a
/// terminal (`None` otherwise: nothing is drawn). Finish it with [`done`].
pub(super) fn spinner(message: impl Into<String>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

/// Clears a spinner from [`spinner`].
pub(super) fn done(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_441_243_278), "2026-12-05 03:27:23 UTC");
    }

    #[test]
    fn tables_are_borderless_columns() {
        let mut t = table(&["KEY", "SEQUENCE"]);
        t.add_row(vec!["alice", "3"]);
        t.add_row(vec!["bob", "12"]);
        align_right(&mut t, &[1]);
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("KEY") && lines[0].contains("SEQUENCE"),
            "{text}"
        );
        assert!(
            lines[1].contains("alice") && lines[1].ends_with(" 3"),
            "{text}"
        );
        assert!(lines[2].ends_with("12"), "{text}");
    }
}
