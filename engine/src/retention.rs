//! Retention policies, with the same semantics as restic's `forget` so that the same options on the
//! same snapshot times keep the same snapshots, for the same reasons.
//!
//! A pure function: snapshots (time with their own UTC offset, tags) in, a keep/remove decision with
//! reasons out. Buckets (hour, day, ISO week, month, year) use each snapshot's local time as it was
//! recorded. `--keep-within*` durations are measured back from the newest snapshot of the group
//! that is not in the future, exactly as restic does; "now" is a parameter so tests fix it. When a
//! counting option still has counts left after the newest snapshot of every bucket, the oldest
//! snapshot of the group is kept as well (restic does this to keep the longest history).

use chrono::{DateTime, Datelike, FixedOffset, Months, TimeDelta, Timelike};
use serde::Serialize;

use crate::error::{Error, Result};

/// A calendar duration such as `1y2m3d4h` (years, months, days, hours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Duration {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl Duration {
    /// Parses `2d3h`, `1y`, `36h` ...: numbers followed by `y`, `m`, `d` or `h`.
    pub fn parse(s: &str) -> Result<Self> {
        let mut d = Duration::default();
        let mut num = String::new();
        if s.is_empty() {
            return Err(Error::invalid("empty duration"));
        }
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i32 =
                num.parse().map_err(|_| Error::invalid(format!("duration '{s}': a number must come before '{c}'")))?;
            num.clear();
            match c {
                'y' => d.years += n,
                'm' => d.months += n,
                'd' => d.days += n,
                'h' => d.hours += n,
                _ => return Err(Error::invalid(format!("duration '{s}': unknown unit '{c}' (use y, m, d, h)"))),
            }
        }
        if !num.is_empty() {
            return Err(Error::invalid(format!("duration '{s}': the last number has no unit (y, m, d, h)")));
        }
        Ok(d)
    }

    /// Whether every part is zero.
    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// `t` minus this duration (years and months on the calendar, then days and hours).
    fn before(&self, t: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        let t = if months >= 0 {
            t.checked_sub_months(Months::new(months as u32))?
        } else {
            t.checked_add_months(Months::new(months.unsigned_abs()))?
        };
        t.checked_sub_signed(TimeDelta::days(self.days.into()))?.checked_sub_signed(TimeDelta::hours(self.hours.into()))
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut any = false;
        for (v, u) in [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if v != 0 {
                write!(f, "{v}{u}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

/// Which snapshots to keep. Counts of `-1` mean unlimited; `0` means the option is not set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeepPolicy {
    pub last: i64,
    pub hourly: i64,
    pub daily: i64,
    pub weekly: i64,
    pub monthly: i64,
    pub yearly: i64,
    pub within: Duration,
    pub within_hourly: Duration,
    pub within_daily: Duration,
    pub within_weekly: Duration,
    pub within_monthly: Duration,
    pub within_yearly: Duration,
    /// Keep snapshots that carry every tag of any one entry.
    pub tags: Vec<Vec<String>>,
}

/// The facts about a snapshot that retention looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<T> {
    pub item: T,
    pub time_ns: i64,
    pub utc_offset_s: i32,
    pub tags: Vec<String>,
}

/// The decision for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision<T> {
    pub item: T,
    pub keep: bool,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
}

type Bucketer = fn(&DateTime<FixedOffset>, usize) -> i64;

fn always(_: &DateTime<FixedOffset>, nr: usize) -> i64 {
    nr as i64
}
fn ymdh(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 1_000_000 + i64::from(t.month()) * 10_000 + i64::from(t.day()) * 100 + i64::from(t.hour())
}
fn ymd(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}
fn yw(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    let w = t.iso_week();
    i64::from(w.year()) * 100 + i64::from(w.week())
}
fn ym(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 100 + i64::from(t.month())
}
fn y(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year())
}

fn local_time(time_ns: i64, offset_s: i32) -> DateTime<FixedOffset> {
    let utc = DateTime::from_timestamp_nanos(time_ns);
    let offset =
        FixedOffset::east_opt(offset_s).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset is valid"));
    utc.with_timezone(&offset)
}

impl KeepPolicy {
    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_zero()
            && self.within_hourly.is_zero()
            && self.within_daily.is_zero()
            && self.within_weekly.is_zero()
            && self.within_monthly.is_zero()
            && self.within_yearly.is_zero()
            && self.tags.is_empty()
    }

    /// Decides for one group of snapshots at time `now_ns`. The result is ordered newest first. An
    /// empty policy keeps everything (with the reason `policy is empty`).
    pub fn apply<T: Clone>(&self, snapshots: &[Candidate<T>], now_ns: i64) -> Vec<Decision<T>> {
        let mut list: Vec<&Candidate<T>> = snapshots.iter().collect();
        // Newest first; equal times keep their given order.
        list.sort_by_key(|c| std::cmp::Reverse(c.time_ns));
        if self.is_empty() {
            return list
                .iter()
                .map(|c| Decision { item: c.item.clone(), keep: true, reasons: vec!["policy is empty".into()] })
                .collect();
        }
        let mut buckets: [(i64, Bucketer, Option<i64>, &str); 6] = [
            (self.last, always, None, "last snapshot"),
            (self.hourly, ymdh, None, "hourly snapshot"),
            (self.daily, ymd, None, "daily snapshot"),
            (self.weekly, yw, None, "weekly snapshot"),
            (self.monthly, ym, None, "monthly snapshot"),
            (self.yearly, y, None, "yearly snapshot"),
        ];
        let mut within_buckets: [(Duration, Bucketer, Option<i64>, &str); 5] = [
            (self.within_hourly, ymdh, None, "hourly within"),
            (self.within_daily, ymd, None, "daily within"),
            (self.within_weekly, yw, None, "weekly within"),
            (self.within_monthly, ym, None, "monthly within"),
            (self.within_yearly, y, None, "yearly within"),
        ];
        // The newest snapshot that is not in the future; with none, every snapshot is "within".
        let newest = list.iter().find(|c| c.time_ns < now_ns).map(|c| local_time(c.time_ns, c.utc_offset_s));
        let is_within = |d: &Duration, t: DateTime<FixedOffset>| match newest {
            Some(n) => d.before(n).is_some_and(|limit| t > limit),
            None => true,
        };
        let oldest = list.len().saturating_sub(1);
        let mut out = Vec::with_capacity(list.len());
        for (nr, cur) in list.iter().enumerate() {
            let t = local_time(cur.time_ns, cur.utc_offset_s);
            let mut reasons = Vec::new();
            for group in &self.tags {
                if group.iter().all(|tag| cur.tags.contains(tag)) {
                    reasons.push(format!("has tags [{}]", group.join(", ")));
                }
            }
            if !self.within.is_zero() && is_within(&self.within, t) {
                reasons.push(format!("within {}", self.within));
            }
            for b in buckets.iter_mut() {
                if b.0 == 0 {
                    continue;
                }
                let value = (b.1)(&t, nr);
                // With counts left, the oldest snapshot is kept too.
                if b.2 != Some(value) || nr == oldest {
                    b.2 = Some(value);
                    if b.0 > 0 {
                        b.0 -= 1;
                    }
                    reasons.push(b.3.to_owned());
                }
            }
            for b in within_buckets.iter_mut() {
                if b.0.is_zero() || !is_within(&b.0, t) {
                    continue;
                }
                let value = (b.1)(&t, nr);
                if b.2 != Some(value) {
                    b.2 = Some(value);
                    reasons.push(format!("{} {}", b.3, b.0));
                }
            }
            out.push(Decision { item: cur.item.clone(), keep: !reasons.is_empty(), reasons });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots at the given UTC times ("YYYY-MM-DD HH:MM"), ids are their positions.
    fn snaps(times: &[&str]) -> Vec<Candidate<usize>> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let dt = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").expect("test time").and_utc();
                Candidate {
                    item: i,
                    time_ns: dt.timestamp_nanos_opt().expect("in range"),
                    utc_offset_s: 0,
                    tags: vec![],
                }
            })
            .collect()
    }

    fn kept(p: &KeepPolicy, s: &[Candidate<usize>]) -> Vec<usize> {
        let mut k: Vec<usize> = p.apply(s, NOW).into_iter().filter(|d| d.keep).map(|d| d.item).collect();
        k.sort();
        k
    }

    /// Far after every test snapshot.
    const NOW: i64 = 4_000_000_000_000_000_000;

    const SERIES: &[&str] = &[
        "2026-01-01 10:00", // 0
        "2026-01-01 10:30", // 1
        "2026-01-01 11:00", // 2
        "2026-01-02 09:00", // 3
        "2026-01-08 09:00", // 4
        "2026-02-01 00:00", // 5
        "2026-02-15 12:00", // 6
        "2027-03-01 08:00", // 7
        "2027-03-01 08:45", // 8
    ];

    #[test]
    fn each_option_alone() {
        let s = snaps(SERIES);
        let p = |f: fn(&mut KeepPolicy)| {
            let mut p = KeepPolicy::default();
            f(&mut p);
            p
        };
        assert_eq!(kept(&p(|p| p.last = 3), &s), vec![6, 7, 8]);
        assert_eq!(kept(&p(|p| p.hourly = 3), &s), vec![5, 6, 8]);
        assert_eq!(kept(&p(|p| p.daily = 4), &s), vec![4, 5, 6, 8]);
        // ISO weeks: 2026-01-01 and 01-02 share week 1; 01-08 is week 2.
        assert_eq!(kept(&p(|p| p.weekly = 4), &s), vec![4, 5, 6, 8]);
        assert_eq!(kept(&p(|p| p.monthly = 3), &s), vec![4, 6, 8]);
        // Unlimited counts always have counts left, so the oldest snapshot is kept too.
        assert_eq!(kept(&p(|p| p.yearly = -1), &s), vec![0, 6, 8]);
        assert_eq!(kept(&p(|p| p.hourly = -1), &s), vec![0, 1, 2, 3, 4, 5, 6, 8]);
        // Counts left after every bucket: the oldest is kept as well; counts used up: it is not.
        assert_eq!(kept(&p(|p| p.daily = 20), &s), vec![0, 2, 3, 4, 5, 6, 8]);
        assert_eq!(kept(&p(|p| p.daily = 6), &s), vec![2, 3, 4, 5, 6, 8]);
        // Within is measured from the newest snapshot, not from now.
        assert_eq!(kept(&p(|p| p.within = Duration::parse("1h").expect("valid")), &s), vec![7, 8]);
        // 1y1m before 2027-03-01 08:45 is 2026-02-01 08:45: snapshot 5 (00:00 that day) is older.
        assert_eq!(kept(&p(|p| p.within = Duration::parse("1y1m").expect("valid")), &s), vec![6, 7, 8]);
        assert_eq!(kept(&p(|p| p.within_daily = Duration::parse("1y2m").expect("valid")), &s), vec![2, 3, 4, 5, 6, 8]);
    }

    #[test]
    fn combinations_and_reasons() {
        let s = snaps(SERIES);
        let p = KeepPolicy { last: 1, daily: 2, monthly: 2, ..KeepPolicy::default() };
        let d = p.apply(&s, NOW);
        let reasons = |i: usize| d.iter().find(|x| x.item == i).expect("present").reasons.clone();
        assert_eq!(reasons(8), vec!["last snapshot", "daily snapshot", "monthly snapshot"]);
        assert_eq!(reasons(6), vec!["daily snapshot", "monthly snapshot"]);
        assert!(reasons(7).is_empty());
        assert_eq!(kept(&p, &s), vec![6, 8]);
    }

    #[test]
    fn tags_empty_policy_and_local_time() {
        let mut s = snaps(SERIES);
        s[0].tags = vec!["keep".into(), "x".into()];
        let p = KeepPolicy { last: 1, tags: vec![vec!["keep".into()]], ..KeepPolicy::default() };
        assert_eq!(kept(&p, &s), vec![0, 8]);
        assert_eq!(kept(&KeepPolicy::default(), &s).len(), s.len());
        // 20:00 to 23:00 UTC on Jan 1st span two local days in UTC+2 (22:00 to 01:00).
        let mut t = snaps(&["2026-01-01 20:00", "2026-01-01 21:30", "2026-01-01 22:30", "2026-01-01 23:00"]);
        let daily2 = KeepPolicy { daily: 2, ..KeepPolicy::default() };
        for c in t.iter_mut() {
            c.utc_offset_s = 7200;
        }
        assert_eq!(kept(&daily2, &t), vec![1, 3]);
        // In UTC they are one day: the newest, plus the oldest because a count is left.
        for c in t.iter_mut() {
            c.utc_offset_s = 0;
        }
        assert_eq!(kept(&daily2, &t), vec![0, 3]);
    }

    #[test]
    fn future_snapshots_do_not_move_the_within_window() {
        let s = snaps(&["2026-01-01 00:00", "2026-01-01 05:00", "2030-01-01 00:00"]);
        let now = s[1].time_ns + 1;
        let p = KeepPolicy { within: Duration::parse("2h").expect("valid"), ..KeepPolicy::default() };
        // Newest not in the future is 05:00, so 00:00 is outside 2h; the future one is after it.
        let mut k: Vec<usize> = p.apply(&s, now).into_iter().filter(|d| d.keep).map(|d| d.item).collect();
        k.sort();
        assert_eq!(k, vec![1, 2]);
    }

    #[test]
    fn tag_reasons_name_the_tag_list() {
        let mut s = snaps(&["2026-01-01 00:00"]);
        s[0].tags = vec!["a".into(), "b".into()];
        let p = KeepPolicy { tags: vec![vec!["a".into(), "b".into()], vec!["b".into()]], ..KeepPolicy::default() };
        assert_eq!(p.apply(&s, NOW)[0].reasons, vec!["has tags [a, b]", "has tags [b]"]);
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("2d3h").expect("valid"), Duration { days: 2, hours: 3, ..Duration::default() });
        assert_eq!(Duration::parse("1y5m").expect("valid").to_string(), "1y5m");
        assert!(Duration::parse("5").is_err());
        assert!(Duration::parse("5w").is_err());
        assert!(Duration::parse("").is_err());
    }
}
