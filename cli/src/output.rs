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

/// RFC 3339 with nanoseconds, as restic's JSON writes times: in the offset `utc_offset_s` east of
/// UTC when given (a snapshot's recorded zone), otherwise in this machine's local zone.
pub fn rfc3339(ns: i64, utc_offset_s: Option<i32>) -> String {
    use chrono::{DateTime, FixedOffset, Local, SecondsFormat};
    let utc = DateTime::from_timestamp_nanos(ns);
    let offset = utc_offset_s.and_then(FixedOffset::east_opt).unwrap_or_else(|| *utc.with_timezone(&Local).offset());
    utc.with_timezone(&offset).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A snapshot as restic's `snapshots --json` writes it (`time` in RFC 3339 with the recorded
/// offset, `tree`, `parent`, `paths`, `hostname`, `username`, `uid`, `gid`, `tags`, `id`,
/// `short_id`, `program_version`), followed by cairn's own fields (`time_ns`, `host`, `user`,
/// `source`, `summary`, ...) for the scripts that read them.
pub fn snapshot_json(id: &cairn_format::SnapshotId, s: &cairn_format::snapshot::Snapshot) -> Result<serde_json::Value> {
    let mut v = serde_json::json!({
        "time": rfc3339(s.time_ns, Some(s.utc_offset_s)),
        "tree": s.tree,
        "paths": s.paths,
        "hostname": s.host,
        "username": s.user,
        "uid": s.uid,
        "gid": s.gid,
        "tags": s.tags,
        "program_version": format!("cairn {}", s.program_version),
        "id": id,
        "short_id": id.short(),
    });
    if let Some(parent) = &s.parent {
        v["parent"] = serde_json::to_value(parent)?;
    }
    if let (Some(v), serde_json::Value::Object(extras)) = (v.as_object_mut(), serde_json::to_value(s)?) {
        for (k, x) in extras {
            v.entry(k).or_insert(x);
        }
        // As restic: no `parent` key for a snapshot without one.
        if v.get("parent").is_some_and(serde_json::Value::is_null) {
            v.remove("parent");
        }
    }
    Ok(v)
}

/// `1 snapshot`, `2 snapshots`, `0 snapshots`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
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

/// A path as restic prints it: unchanged when every character is printable, otherwise quoted and
/// escaped like Go's `strconv.Quote` (`"a\nb"`, `"\x1b[31m"`), so that a file name cannot break a
/// listing into lines or send escape sequences to the terminal.
pub fn quote(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || c == '\u{fffd}') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    std::borrow::Cow::Owned(out)
}

/// Printing from inside a streaming engine call: a failed write (a closed pipe) stops the engine,
/// and [`Sink::finish`] returns that failure rather than the engine's "interrupted", so
/// `cairn diff ... | head` ends quietly.
#[derive(Debug, Default)]
pub struct Sink {
    failure: Option<anyhow::Error>,
}

impl Sink {
    /// Turns the result of a write into an error that stops the engine.
    pub fn put(&mut self, written: Result<()>) -> cairn_engine::Result<()> {
        written.map_err(|err| {
            self.failure = Some(err);
            cairn_engine::Error::new(cairn_engine::ErrorKind::Interrupted, "output closed")
        })
    }

    /// The engine's result, or the write failure that stopped it.
    pub fn finish<T>(self, result: cairn_engine::Result<T>) -> Result<T> {
        match self.failure {
            Some(f) => Err(f),
            None => Ok(result?),
        }
    }
}
