//! Rendering: sizes, times, tables, JSON, and writing to standard output with a closed pipe treated
//! as a quiet end.

use std::io::Write;

use anyhow::Result;

/// `1.5 GiB`-style sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.2} {}", UNITS[unit]) }
}

/// Local time of a Unix nanosecond timestamp, `2026-11-22 04:58:51`.
pub fn time(ns: i64) -> String {
    use chrono::{Local, TimeZone};
    Local
        .timestamp_opt(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ns.to_string())
}

/// `1:02:03` or `2:03` durations.
pub fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Writes a line to standard output.
pub fn line(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes a value as JSON to standard output.
pub fn json<T: serde::Serialize>(v: &T) -> Result<()> {
    line(&serde_json::to_string(v)?)
}

/// Prints rows as a left-aligned table with a header and a rule.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let fmt = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned()
    };
    line(&fmt(header.iter().map(|h| h.to_string()).collect()))?;
    line(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len().saturating_sub(1))))?;
    for r in rows {
        line(&fmt(r.clone()))?;
    }
    Ok(())
}
