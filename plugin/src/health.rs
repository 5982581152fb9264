//! A webhook's health at a glance: success rate and latency (p50/p95) per
//! UTC hour over the last 24 hours and per UTC day over the last 30 days.
//!
//! A page view must not cost more as attempts pile up (a busy webhook makes
//! millions a month), so it never reads `attempts`. `record_attempts` keeps an hourly
//! rollup instead (`attempt_rollups`, migration 10): per webhook, UTC hour
//! and latency bucket, the number of attempts and of successes. Latency is
//! kept as a fixed log-scale histogram ([`BOUNDS_MS`]), so p50/p95 of any
//! hour or day are read from it at the bucket's precision: a percentile is
//! shown as the upper bound of the bucket it falls in ("≤ 200 ms"). A page
//! reads at most 24 × 17 rows for the hours and 30 × 17 grouped rows for the
//! days, whatever the traffic.
//!
//! What counts: every recorded attempt of a real event — retries, resends
//! and late answers included — but not test sends, which the admin makes by
//! hand (they stay in the history list, as they stay out of the failure
//! streak). Latency is the time to a response, so it covers answered
//! attempts only; one without a response (refused, unreachable, timed out,
//! not built) counts as a failure in the success rate and is kept in a
//! bucket of its own ([`NO_RESPONSE`]).

use std::collections::BTreeMap;

use crate::host::{DbError, Host, Value};

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// Hours in the hourly view, days in the daily one.
pub const HOURS: u64 = 24;
pub const DAYS: u64 = 30;

/// Inclusive upper bounds of the latency buckets, in ms: 1–2–5 steps, so
/// a percentile is known within a factor of 2 to 2.5. One bucket more holds
/// everything slower than the last bound. Migration 10's backfill writes the
/// same buckets in SQL; `tests/health.rs` holds the two to each other at
/// every bound.
pub const BOUNDS_MS: [u64; 15] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000];
/// Latency buckets: one per bound and one past the last.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;
/// The bucket of attempts that got no response (no latency to count).
pub const NO_RESPONSE: i64 = -1;

/// The latency bucket of an answered attempt that took `duration_ms`.
pub fn bucket(duration_ms: u64) -> usize {
    BOUNDS_MS.iter().position(|b| duration_ms <= *b).unwrap_or(BOUNDS_MS.len())
}

/// The start of the UTC hour (or day) holding `ms`.
pub fn hour_of(ms: u64) -> u64 {
    ms / HOUR_MS * HOUR_MS
}
pub fn day_of(ms: u64) -> u64 {
    ms / DAY_MS * DAY_MS
}

/// Rollup increments gathered over one recorded batch, written in one
/// `execute_many` (one row per webhook, hour and bucket the batch touched).
#[derive(Debug, Default)]
pub struct Rollup(BTreeMap<(i64, u64, i64), (u64, u64)>);

/// Adds a batch's counts to the stored ones.
const UPSERT: &str = "INSERT INTO attempt_rollups (webhook_id, hour, bucket, attempts, successes) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (webhook_id, hour, bucket) DO UPDATE SET \
     attempts = attempt_rollups.attempts + excluded.attempts, \
     successes = attempt_rollups.successes + excluded.successes";

impl Rollup {
    /// Counts one recorded attempt.
    pub fn add(&mut self, webhook_id: i64, attempted_at: u64, status: Option<u16>, duration_ms: u64, success: bool) {
        let b = match status {
            Some(_) => bucket(duration_ms) as i64,
            None => NO_RESPONSE,
        };
        let e = self.0.entry((webhook_id, hour_of(attempted_at), b)).or_default();
        e.0 += 1;
        e.1 += u64::from(success);
    }

    /// The increments, in key order: (webhook, hour, bucket, attempts, successes).
    pub fn entries(&self) -> impl Iterator<Item = (i64, u64, i64, u64, u64)> + '_ {
        self.0.iter().map(|((w, h, b), (n, ok))| (*w, *h, *b, *n, *ok))
    }

    /// Adds the counts to `attempt_rollups`, inside the caller's transaction.
    pub fn write(&self, host: &dyn Host) -> Result<(), DbError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let rows: Vec<Vec<Value>> = self
            .0
            .iter()
            .map(|((w, h, b), (n, ok))| vec![(*w).into(), (*h).into(), (*b).into(), (*n).into(), (*ok).into()])
            .collect();
        host.execute_many(UPSERT, &rows)?;
        Ok(())
    }
}

/// One hour or day: its counts and latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slot {
    /// Start of the UTC hour or day, ms.
    pub start_ms: u64,
    pub attempts: u64,
    pub successes: u64,
    /// Answered attempts per latency bucket.
    pub latency: [u64; BUCKETS],
}

impl Slot {
    fn add(&mut self, b: i64, attempts: u64, successes: u64) {
        self.attempts += attempts;
        self.successes += successes;
        // A bucket this plugin never writes (a row from a newer version) is
        // counted as an attempt, not as a latency.
        if let Some(n) = usize::try_from(b).ok().and_then(|b| self.latency.get_mut(b)) {
            *n += attempts;
        }
    }

    fn merge(&mut self, o: &Slot) {
        self.attempts += o.attempts;
        self.successes += o.successes;
        for (a, b) in self.latency.iter_mut().zip(o.latency) {
            *a += b;
        }
    }

    pub fn failures(&self) -> u64 {
        self.attempts.saturating_sub(self.successes)
    }

    /// Attempts with a response (those with a latency).
    pub fn answered(&self) -> u64 {
        self.latency.iter().sum()
    }

    /// The bucket holding the `pct` percentile of the answered attempts'
    /// latency (nearest rank: the smallest bucket holding at least `pct` %
    /// of them); `None` without any.
    pub fn percentile(&self, pct: u64) -> Option<usize> {
        let n = self.answered();
        if n == 0 {
            return None;
        }
        let rank = (n * pct).div_ceil(100).max(1);
        let mut seen = 0;
        self.latency.iter().position(|c| {
            seen += c;
            seen >= rank
        })
    }
}

/// The health view's numbers: 24 hourly and 30 daily slots, oldest first,
/// the last one the current (partial) hour or day.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub hours: Vec<Slot>,
    pub days: Vec<Slot>,
}

impl Health {
    /// All slots together (the period's summary).
    pub fn total(slots: &[Slot]) -> Slot {
        let mut t = Slot::default();
        for s in slots {
            t.merge(s);
        }
        t
    }
}

/// The hourly rollups of the last 24 hours, as read for the page: the rows
/// seek `attempt_rollups`' primary key (webhook_id, hour, bucket).
pub(crate) const HOURS_SQL: &str = "SELECT hour, bucket, attempts, successes FROM attempt_rollups \
     WHERE webhook_id = ?1 AND hour >= ?2 AND hour <= ?3";
/// The same per UTC day, grouped in the database (at most 30 × 17 rows come back).
pub(crate) const DAYS_SQL: &str = "SELECT hour / 86400000, bucket, SUM(attempts), SUM(successes) \
     FROM attempt_rollups WHERE webhook_id = ?1 AND hour >= ?2 AND hour <= ?3 \
     GROUP BY hour / 86400000, bucket";

/// Reads a webhook's health as of `now`.
pub fn load(host: &dyn Host, webhook_id: i64, now: u64) -> Result<Health, DbError> {
    let this_hour = hour_of(now);
    let first_hour = this_hour.saturating_sub((HOURS - 1) * HOUR_MS);
    let mut hours: Vec<Slot> =
        (0..HOURS).map(|i| Slot { start_ms: first_hour + i * HOUR_MS, ..Slot::default() }).collect();
    let rows = host.query(HOURS_SQL, &[webhook_id.into(), first_hour.into(), this_hour.into()])?;
    for r in rows.iter() {
        let i = (r.u64(0).saturating_sub(first_hour) / HOUR_MS) as usize;
        if let Some(s) = hours.get_mut(i) {
            s.add(r.i64(1), r.u64(2), r.u64(3));
        }
    }
    let today = day_of(now);
    let first_day = today.saturating_sub((DAYS - 1) * DAY_MS);
    let mut days: Vec<Slot> = (0..DAYS).map(|i| Slot { start_ms: first_day + i * DAY_MS, ..Slot::default() }).collect();
    let rows = host.query(DAYS_SQL, &[webhook_id.into(), first_day.into(), this_hour.into()])?;
    for r in rows.iter() {
        let i = (r.u64(0).saturating_mul(DAY_MS).saturating_sub(first_day) / DAY_MS) as usize;
        if let Some(s) = days.get_mut(i) {
            s.add(r.i64(1), r.u64(2), r.u64(3));
        }
    }
    Ok(Health { hours, days })
}

/// One batch (`?2` rows) of the rollups of hours that ended before the
/// hour `?1` (the history retention's cutoff, see [`prune_before`]), on
/// `attempt_rollups_by_hour`. `maintain` runs it with the history's batches.
pub(crate) const PRUNE_SQL: &str = "DELETE FROM attempt_rollups WHERE (webhook_id, hour, bucket) IN (\
     SELECT webhook_id, hour, bucket FROM attempt_rollups WHERE hour < ?1 LIMIT ?2)";

/// The `?1` of [`PRUNE_SQL`] for a retention cutoff: an hour partly inside
/// the retention is kept whole.
pub fn prune_before(cutoff: u64) -> u64 {
    hour_of(cutoff)
}

// ---------------------------------------------------------------- text

/// A latency bucket as people read it: "≤ 200 ms", "≤ 5 s", "> 50 s".
pub fn latency_text(b: usize) -> String {
    let ms = |v: u64| if v >= 1000 { format!("{} s", v / 1000) } else { format!("{v} ms") };
    match BOUNDS_MS.get(b) {
        Some(v) => format!("≤ {}", ms(*v)),
        None => format!("> {}", ms(BOUNDS_MS[BOUNDS_MS.len() - 1])),
    }
}

/// A success rate to one decimal ("66.7%"), whole when it is ("75%").
/// Never rounded to 100% with a failure, nor to 0% with a success.
pub fn rate_text(successes: u64, attempts: u64) -> String {
    if attempts == 0 {
        return "–".into();
    }
    let mut tenths = (successes * 2000 + attempts) / (2 * attempts);
    if successes < attempts {
        tenths = tenths.min(999);
    }
    if successes > 0 {
        tenths = tenths.max(1);
    }
    if tenths.is_multiple_of(10) { format!("{}%", tenths / 10) } else { format!("{}.{}%", tenths / 10, tenths % 10) }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// "Nov 28" for the UTC day holding `ms`.
pub fn day_text(ms: u64) -> String {
    let d = crate::outbox::rfc3339(ms);
    let month = d.get(5..7).and_then(|m| m.parse::<usize>().ok()).and_then(|m| MONTHS.get(m.wrapping_sub(1)));
    match (month, d.get(8..10)) {
        (Some(m), Some(day)) => format!("{m} {}", day.trim_start_matches('0')),
        _ => d,
    }
}

/// "09:00" for the UTC hour holding `ms`.
pub fn hour_text(ms: u64) -> String {
    let d = crate::outbox::rfc3339(ms);
    d.get(11..16).map(str::to_owned).unwrap_or(d)
}

// ---------------------------------------------------------------- view

/// The chart's coordinate space (the SVG scales it to the page): plot area
/// x from `X0` to `X1`; the success panel `OK_H` high from `OK_TOP`, the
/// latency panel `LAT_H` high from `LAT_TOP`. Text is 11 units (webhooks.css),
/// about 9 px on a 360 px screen.
const VIEW_W: f64 = 360.0;
const VIEW_H: f64 = 182.0;
const X0: f64 = 46.0;
const X1: f64 = 356.0;
const OK_TOP: f64 = 16.0;
const OK_H: f64 = 56.0;
const LAT_TOP: f64 = 98.0;
const LAT_H: f64 = 64.0;
/// Half the width of the widest x label ("Nov 28" at the chart's font size).
const EDGE: f64 = 20.0;

/// Rounds a coordinate for the page (two decimals are well below a pixel).
fn c(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The y of latency bucket `b`'s upper bound in the latency panel.
fn lat_y(b: usize) -> f64 {
    LAT_TOP + LAT_H - (b as f64 + 1.0) / BUCKETS as f64 * LAT_H
}

/// One hour or day, as the template shows it.
pub struct SlotView {
    /// Column heading: "09:00", "Nov 28".
    pub label: String,
    /// Machine time of its start (`<time datetime>`), and the whole span in words.
    pub datetime: String,
    pub span: String,
    pub attempts: u64,
    pub successes: u64,
    pub rate: String,
    pub p50: String,
    pub p95: String,
    /// The tooltip: every number of the slot.
    pub tip: String,
    /// Bar geometry: x, width; the success part (y, height) and the failed
    /// part above it, each absent when empty.
    pub x: String,
    pub w: String,
    pub ok: Option<(String, String)>,
    pub bad: Option<(String, String)>,
    /// Latency marks: centre x, p50 y, p95 y, and the p95 tick's ends.
    pub lat: Option<LatMark>,
}

pub struct LatMark {
    pub cx: String,
    pub y50: String,
    pub y95: String,
    pub x1: String,
    pub x2: String,
}

/// A labelled gridline or tick.
pub struct Tick {
    pub at: String,
    pub text: String,
    /// `middle` under its slot; `end` at the right edge, so the last label
    /// (today's) is not cut off.
    pub anchor: &'static str,
}

/// One period (24 hours or 30 days) as the template shows it.
pub struct PeriodView {
    /// `hours` / `days`: element ids and test hooks.
    pub key: &'static str,
    pub title: &'static str,
    /// "UTC hour" / "UTC day", for the caption and the summary.
    pub unit: &'static str,
    /// The table's first heading: "Hour (UTC)" / "Day (UTC)".
    pub heading: &'static str,
    pub empty: bool,
    /// The period in one line (also the chart's accessible name).
    pub summary: String,
    pub totals: String,
    pub slots: Vec<SlotView>,
    pub x_ticks: Vec<Tick>,
    pub lat_ticks: Vec<Tick>,
    pub view_box: String,
    pub x0: String,
    pub x1: String,
    /// Baselines of the two panels' titles.
    pub ok_title_y: String,
    pub lat_title_y: String,
    pub ok_top: String,
    pub ok_bottom: String,
    pub lat_top: String,
    pub lat_bottom: String,
    /// Where the y labels end, and the x labels' baseline.
    pub label_x: String,
    pub axis_y: String,
}

/// The whole health section.
pub struct HealthView {
    pub hours: PeriodView,
    pub days: PeriodView,
    /// Nothing in 30 days: one sentence instead of two empty charts.
    pub empty: bool,
    /// The latency precision, for the legend and the captions.
    pub precision: String,
    /// Set when history is kept less than the 30 days shown.
    pub retention_note: Option<String>,
}

impl HealthView {
    /// Both periods, hours first.
    pub fn periods(&self) -> [&PeriodView; 2] {
        [&self.hours, &self.days]
    }

    pub fn new(h: &Health, retention_ms: u64) -> HealthView {
        let hours = period(&h.hours, "hours", "Last 24 hours", "UTC hour", HOUR_MS, hour_text, |s| {
            // Every sixth hour, on the clock's quarters.
            (s / HOUR_MS).is_multiple_of(6)
        });
        let last_day = h.days.last().map_or(0, |d| d.start_ms);
        let days = period(&h.days, "days", "Last 30 days", "UTC day", DAY_MS, day_text, move |s| {
            // Every seventh day, counting back from today.
            (last_day.saturating_sub(s) / DAY_MS).is_multiple_of(7)
        });
        let bounds: Vec<String> = BOUNDS_MS.iter().take(6).map(|b| b.to_string()).collect();
        HealthView {
            empty: days.empty && hours.empty,
            hours,
            days,
            precision: format!(
                "Latency is the time to a response, for attempts that got one. Percentiles are shown as the upper \
                 bound of a log-scale bucket ({} ms … 50 s): the true value is at most that and more than the \
                 bucket below.",
                bounds.join(", ")
            ),
            retention_note: (retention_ms < DAYS * DAY_MS).then(|| {
                format!(
                    "History is kept for {}, so older days show nothing.",
                    crate::admin::duration_words(retention_ms)
                )
            }),
        }
    }
}

fn period(
    slots: &[Slot],
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    span_ms: u64,
    label: impl Fn(u64) -> String,
    ticked: impl Fn(u64) -> bool,
) -> PeriodView {
    let n = slots.len().max(1) as f64;
    let slot_w = (X1 - X0) / n;
    let bar_w = slot_w * 0.7;
    let total = Health::total(slots);
    let span_text = |s: &Slot| {
        let end = s.start_ms + span_ms;
        if span_ms == HOUR_MS {
            format!("{} {}–{} UTC", day_text(s.start_ms), hour_text(s.start_ms), hour_text(end))
        } else {
            format!("{} (UTC)", day_text(s.start_ms))
        }
    };
    let pct = |s: &Slot, p: u64| s.percentile(p).map_or_else(|| "–".to_owned(), latency_text);
    let views = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let x = X0 + i as f64 * slot_w + (slot_w - bar_w) / 2.0;
            let ok_h = if s.attempts == 0 { 0.0 } else { s.successes as f64 / s.attempts as f64 * OK_H };
            let bottom = OK_TOP + OK_H;
            let ok = (s.successes > 0).then(|| (c(bottom - ok_h), c(ok_h)));
            let bad = (s.failures() > 0).then(|| (c(OK_TOP), c(OK_H - ok_h)));
            let lat = s.percentile(50).zip(s.percentile(95)).map(|(p50, p95)| LatMark {
                cx: c(x + bar_w / 2.0),
                y50: c(lat_y(p50)),
                y95: c(lat_y(p95)),
                x1: c(x),
                x2: c(x + bar_w),
            });
            let span = span_text(s);
            let tip = if s.attempts == 0 {
                format!("{span}: no attempts")
            } else {
                let mut t = format!(
                    "{span}: {} attempts, {} succeeded ({})",
                    s.attempts,
                    s.successes,
                    rate_text(s.successes, s.attempts)
                );
                if s.answered() > 0 {
                    t.push_str(&format!("; latency p50 {}, p95 {}", pct(s, 50), pct(s, 95)));
                }
                t
            };
            SlotView {
                label: label(s.start_ms),
                datetime: crate::outbox::rfc3339(s.start_ms).replace(".000Z", "Z"),
                span,
                attempts: s.attempts,
                successes: s.successes,
                rate: rate_text(s.successes, s.attempts),
                p50: pct(s, 50),
                p95: pct(s, 95),
                tip,
                x: c(x),
                w: c(bar_w),
                ok,
                bad,
                lat,
            }
        })
        .collect::<Vec<_>>();
    let x_ticks = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| ticked(s.start_ms))
        .map(|(i, s)| {
            let at = X0 + (i as f64 + 0.5) * slot_w;
            let (at, anchor) = if at + EDGE > VIEW_W { (X1, "end") } else { (at, "middle") };
            Tick { at: c(at), text: label(s.start_ms), anchor }
        })
        .collect();
    let lat_ticks = [3usize, 6, 9, 12]
        .iter()
        .map(|b| Tick { at: c(lat_y(*b)), text: latency_text(*b).trim_start_matches("≤ ").to_owned(), anchor: "end" })
        .collect();
    let unit_word = if span_ms == HOUR_MS { "hour" } else { "day" };
    let empty = total.attempts == 0;
    let summary = if empty {
        format!("{title}: no attempts.")
    } else {
        let mut s = format!(
            "{title}, per {unit}: {} attempts, {} succeeded",
            total.attempts,
            rate_text(total.successes, total.attempts)
        );
        if total.answered() > 0 {
            s.push_str(&format!("; latency p50 {}, p95 {}", pct(&total, 50), pct(&total, 95)));
        }
        // The worst slot, the first of equals: what an admin looks for.
        let worst = slots.iter().filter(|s| s.attempts > 0).min_by(|a, b| {
            (a.successes * b.attempts).cmp(&(b.successes * a.attempts)).then(a.start_ms.cmp(&b.start_ms))
        });
        if let Some(w) = worst.filter(|w| w.failures() > 0) {
            s.push_str(&format!(
                ". Lowest {unit_word}: {} succeeded, {}",
                rate_text(w.successes, w.attempts),
                span_text(w)
            ));
        }
        s.push('.');
        s
    };
    let totals = if empty {
        String::new()
    } else {
        let mut t = format!("{} attempts · {} succeeded", total.attempts, rate_text(total.successes, total.attempts));
        if total.answered() > 0 {
            t.push_str(&format!(" · p50 {} · p95 {}", pct(&total, 50), pct(&total, 95)));
        }
        t
    };
    PeriodView {
        key,
        title,
        unit,
        heading: if span_ms == HOUR_MS { "Hour (UTC)" } else { "Day (UTC)" },
        empty,
        summary,
        totals,
        slots: views,
        x_ticks,
        lat_ticks,
        ok_title_y: c(OK_TOP - 5.0),
        lat_title_y: c(LAT_TOP - 5.0),
        view_box: format!("0 0 {} {}", c(VIEW_W), c(VIEW_H)),
        x0: c(X0),
        x1: c(X1),
        ok_top: c(OK_TOP),
        ok_bottom: c(OK_TOP + OK_H),
        lat_top: c(LAT_TOP),
        lat_bottom: c(LAT_TOP + LAT_H),
        label_x: c(X0 - 4.0),
        axis_y: c(VIEW_H - 4.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_their_words() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(200), 7);
        assert_eq!(bucket(201), 8);
        assert_eq!(bucket(50_000), 14);
        assert_eq!(bucket(50_001), 15);
        assert_eq!(bucket(u64::MAX), 15);
        assert_eq!(latency_text(7), "≤ 200 ms");
        assert_eq!(latency_text(11), "≤ 5 s");
        assert_eq!(latency_text(15), "> 50 s");
    }

    #[test]
    fn rates_never_round_to_all_or_nothing() {
        assert_eq!(rate_text(3, 4), "75%");
        assert_eq!(rate_text(2, 3), "66.7%");
        assert_eq!(rate_text(1, 3), "33.3%");
        assert_eq!(rate_text(9_999, 10_000), "99.9%");
        assert_eq!(rate_text(1, 10_000), "0.1%");
        assert_eq!(rate_text(5, 5), "100%");
        assert_eq!(rate_text(0, 5), "0%");
        assert_eq!(rate_text(0, 0), "–");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s = Slot::default();
        // 20 answered: 10 in bucket 2, 9 in bucket 5, 1 in bucket 9.
        s.add(2, 10, 10);
        s.add(5, 9, 9);
        s.add(9, 1, 0);
        s.add(NO_RESPONSE, 5, 0);
        assert_eq!((s.attempts, s.successes, s.answered()), (25, 19, 20));
        assert_eq!(s.percentile(50), Some(2), "rank 10 is the last of bucket 2");
        assert_eq!(s.percentile(95), Some(5), "rank 19 is the last of bucket 5");
        assert_eq!(s.percentile(100), Some(9));
        assert_eq!(Slot::default().percentile(50), None);
    }

    #[test]
    fn utc_labels() {
        // 2026-11-28T09:14:03Z
        let t = 1_795_857_243_000;
        assert_eq!(hour_text(hour_of(t)), "09:00");
        assert_eq!(day_text(t), "Nov 28");
        assert_eq!(day_text(0), "Jan 1");
    }
}
