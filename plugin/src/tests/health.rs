//! The health view on the history page (#13 "Health at a glance"): known
//! attempts across hours and days give exact counts, success rates and
//! p50/p95 (at the buckets' precision) in the table and the chart; test
//! sends and other webhooks do not count; rollups are pruned with the
//! history and built by the migration exactly as `record_attempts` keeps them; and a
//! page reads only a bounded range of the rollup's primary key.

use super::*;
use crate::admin::{self, Request, Response};
use crate::health::{self, DAY_MS as D, HOUR_MS as H};
use crate::host::Value;
use crate::testhost::response;

/// 2026-11-28T09:14:03Z: the current UTC hour is 09:00, today Nov 28.
const NOW: u64 = 1_795_857_243_000;

/// A host at [`NOW`] whose deliveries get one attempt each (a failure
/// exhausts), so each raise is exactly one attempt to record.
fn at_now() -> TestHost {
    let h = TestHost::new();
    h.set_now(NOW);
    h.settings_mut(|s| s.retry_schedule_ms = vec![0]);
    h
}

/// Raises a fresh `event_type` event (one subscriber) and records its one
/// attempt as started at `at`, answered `status` after `ms` — or, with no
/// status, failed without a response after `ms`.
fn attempt(h: &TestHost, event_type: &str, at: u64, status: Option<u16>, ms: u64) {
    let id = format!("e{}", h.int("SELECT COUNT(*) FROM events", &[]));
    assert_eq!(raise(h, &id, event_type), 1, "one subscriber");
    let claimed = claim(h, 16).claimed;
    assert_eq!(claimed.len(), 1);
    record(
        h,
        vec![Finished {
            delivery_id: claimed[0],
            started_ms: at,
            duration_ms: ms,
            result: match status {
                Some(s) => Ok(response(s, &[], b"")),
                None => Err("connect: connection refused".into()),
            },
            request_headers: Vec::new(),
            transformed: None,
        }],
    );
}

/// The history page of webhook `w`.
fn page(h: &TestHost, w: i64) -> String {
    let req =
        Request { method: "GET".into(), path: format!("/{w}/history"), actor: "alice".into(), ..Request::default() };
    let Response::Page { status: 200, fragment, .. } = admin::handle(h, &req) else {
        panic!("no history page for {w}");
    };
    fragment
}

/// The part of `html` from `start` to the next `end` (exclusive).
fn part<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let i = html.find(start).unwrap_or_else(|| panic!("no {start:?} in {html}"));
    let rest = &html[i..];
    &rest[..rest.find(end).unwrap_or_else(|| panic!("no {end:?} after {start:?}"))]
}

/// The cells of one row (`attempts`, `succeeded`, `rate`, `p50`, `p95`) of
/// a period's table (`hours`, `days`), oldest first as in the chart (the
/// table shows the newest first).
fn cells(html: &str, period: &str, row: &str) -> Vec<String> {
    let table = part(html, &format!("id=\"wh-health-table-{period}\""), "</table>");
    let tr = part(table, &format!("data-row=\"{row}\""), "</tr>");
    let mut v: Vec<String> = tr.split("<td>").skip(1).map(|c| c[..c.find("</td>").unwrap()].to_owned()).collect();
    v.reverse();
    v
}

/// The column headings of a period's table after the first, as the table
/// shows them (newest first).
fn headings(html: &str, period: &str) -> Vec<String> {
    let table = part(html, &format!("id=\"wh-health-table-{period}\""), "</thead>");
    table.split("<time ").skip(1).map(|c| c[c.find('>').unwrap() + 1..c.find("</time>").unwrap()].to_owned()).collect()
}

/// A period's chart.
fn chart<'a>(html: &'a str, period: &str) -> &'a str {
    let p = part(html, &format!("id=\"wh-health-{period}\""), "</svg>");
    &p[p.find("<svg").expect("a chart")..]
}

/// `n` cells of `blank` with `set` put in at their indexes.
fn row(n: usize, blank: &str, set: &[(usize, &str)]) -> Vec<String> {
    let mut v = vec![blank.to_owned(); n];
    for (i, s) in set {
        v[*i] = (*s).to_owned();
    }
    v
}

/// The attempts of the main test: webhook 1 (user.created) and webhook 2
/// (user.deleted), across hours of today and yesterday and days up to 30
/// back, with known statuses and latencies, plus a test send.
fn seeded() -> TestHost {
    let h = at_now();
    assert_eq!(hook(&h, "https://a.example/", &["user.created"]), 1);
    assert_eq!(hook(&h, "https://b.example/", &["user.deleted"]), 2);
    let this_hour = health::hour_of(NOW);
    let a = |at: u64, status: Option<u16>, ms: u64| attempt(&h, "user.created", at, status, ms);
    // This hour (09:00): 3 of 5 succeed; answered in 3, 8, 15 and 45 ms
    // (buckets ≤5, ≤10, ≤20, ≤50); one got no response.
    a(this_hour + 60_000, Some(200), 3);
    a(this_hour + 120_000, Some(200), 8);
    a(this_hour + 180_000, Some(200), 15);
    a(this_hour + 240_000, Some(500), 45);
    a(this_hour + 300_000, None, 15_000);
    // 08:00: ten successes, nine in 120 ms (≤200 ms), one in 1.5 s (≤2 s).
    for i in 0..9 {
        a(this_hour - H + i * 1000, Some(200), 120);
    }
    a(this_hour - H + 3_000_000, Some(204), 1_500);
    // Yesterday 10:00, the oldest hour shown: 1 ms success, 700 ms failure.
    a(this_hour - 23 * H, Some(200), 1);
    a(this_hour - 23 * H + 5, Some(500), 700);
    // Yesterday 09:00: one hour too old for the hours, in yesterday's day.
    a(this_hour - 24 * H + 59 * 60_000, Some(200), 12);
    // 29 days back (Oct 30), the oldest day shown: three in 60 ms.
    for i in 0..3 {
        a(health::day_of(NOW) - 29 * D + i * H, Some(200), 60);
    }
    // 30 days back (Oct 29): too old for the days.
    a(health::day_of(NOW) - 30 * D + 23 * H, Some(200), 5);
    // Webhook 2, this hour: none of it is webhook 1's.
    for _ in 0..7 {
        attempt(&h, "user.deleted", this_hour + 1000, Some(500), 2);
    }
    // A test send, this hour: in the history list, not in the health view.
    assert!(outbox::send_test(&h, 1, "alice").unwrap().unwrap().success);
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts WHERE webhook_id = 1", &[]), 23);
    h
}

#[test]
fn known_attempts_give_exact_hourly_counts_rates_and_percentiles() {
    let h = seeded();
    let html = page(&h, 1);
    let hours = headings(&html, "hours");
    assert_eq!(hours.len(), 24);
    assert_eq!((hours[0].as_str(), hours[1].as_str(), hours[23].as_str()), ("09:00", "08:00", "10:00"), "newest first");
    assert!(html.contains("<th scope=\"col\">Hour (UTC)</th>"));
    let (old, eight, now) = (0, 22, 23);
    assert_eq!(cells(&html, "hours", "attempts"), row(24, "0", &[(old, "2"), (eight, "10"), (now, "5")]));
    assert_eq!(cells(&html, "hours", "succeeded"), row(24, "0", &[(old, "1"), (eight, "10"), (now, "3")]));
    assert_eq!(cells(&html, "hours", "rate"), row(24, "–", &[(old, "50%"), (eight, "100%"), (now, "60%")]));
    // Nearest rank over the answered attempts, shown as the bucket's bound:
    // this hour's four are 3, 8, 15, 45 ms → p50 the 2nd (≤10), p95 the 4th (≤50).
    assert_eq!(cells(&html, "hours", "p50"), row(24, "–", &[(old, "≤ 1 ms"), (eight, "≤ 200 ms"), (now, "≤ 10 ms")]));
    assert_eq!(cells(&html, "hours", "p95"), row(24, "–", &[(old, "≤ 1 s"), (eight, "≤ 2 s"), (now, "≤ 50 ms")]));

    // The chart: one group per hour with attempts; green for the successes'
    // share, red for the failures', a p50 dot and a p95 bar for latency.
    let svg = chart(&html, "hours");
    assert!(svg.contains("role=\"img\""), "{svg}");
    assert_eq!(svg.matches("<g class=\"wh-chart-slot\"").count(), 3);
    assert_eq!(svg.matches("class=\"wh-chart-ok\"").count(), 3);
    assert_eq!(svg.matches("class=\"wh-chart-bad\"").count(), 2);
    assert_eq!(svg.matches("class=\"wh-chart-p50\"").count(), 3);
    assert_eq!(svg.matches("class=\"wh-chart-p95\"").count(), 3);
    // This hour: 60 % of the 56-unit panel is green, from its bottom (72) up;
    // p50 in bucket 3 (≤10 ms) and p95 in bucket 5 (≤50 ms) of 16 on the
    // latency panel (98 to 162).
    let slot = part(svg, "data-start=\"2026-11-28T09:00:00Z\"", "</g>");
    assert!(slot.contains("60%") && slot.contains("5 attempts, 3 succeeded"), "{slot}");
    assert!(slot.contains("class=\"wh-chart-ok\" x=") && slot.contains("y=\"38.4\" width="), "{slot}");
    assert!(slot.contains("height=\"33.6\""), "{slot}");
    assert!(slot.contains("height=\"22.4\""), "{slot}");
    assert!(slot.contains("cy=\"146\""), "p50 at 162 − 4/16 × 64: {slot}");
    assert!(slot.contains("y1=\"138\" y2=\"138\""), "p95 at 162 − 6/16 × 64: {slot}");
    // Its accessible name sums the period up, worst hour included.
    assert!(
        svg.contains(
            "aria-label=\"Last 24 hours, per UTC hour: 17 attempts, 82.4% succeeded; latency p50 ≤ 200 ms, \
             p95 ≤ 2 s. Lowest hour: 50% succeeded, Nov 27 10:00–11:00 UTC.\""
        ),
        "{svg}"
    );
}

#[test]
fn known_attempts_give_exact_daily_counts_rates_and_percentiles() {
    let h = seeded();
    let html = page(&h, 1);
    let days = headings(&html, "days");
    assert_eq!(days.len(), 30);
    assert_eq!((days[0].as_str(), days[1].as_str(), days[29].as_str()), ("Nov 28", "Nov 27", "Oct 30"), "newest first");
    // Today's label ends at the chart's right edge, whole.
    assert!(chart(&html, "days").contains("<text x=\"356\" y=\"178\" text-anchor=\"end\">Nov 28</text>"));
    let (first, yesterday, today) = (0, 28, 29);
    assert_eq!(cells(&html, "days", "attempts"), row(30, "0", &[(first, "3"), (yesterday, "3"), (today, "15")]));
    assert_eq!(cells(&html, "days", "succeeded"), row(30, "0", &[(first, "3"), (yesterday, "2"), (today, "13")]));
    assert_eq!(cells(&html, "days", "rate"), row(30, "–", &[(first, "100%"), (yesterday, "66.7%"), (today, "86.7%")]));
    // Today's 14 answered: 3, 8, 15, 45, 9 × 120, 1,500 ms → p50 the 7th
    // (≤200 ms), p95 the 14th (≤2 s). Yesterday's 1, 12, 700 ms.
    assert_eq!(
        cells(&html, "days", "p50"),
        row(30, "–", &[(first, "≤ 100 ms"), (yesterday, "≤ 20 ms"), (today, "≤ 200 ms")])
    );
    assert_eq!(
        cells(&html, "days", "p95"),
        row(30, "–", &[(first, "≤ 100 ms"), (yesterday, "≤ 1 s"), (today, "≤ 2 s")])
    );
    let svg = chart(&html, "days");
    assert_eq!(svg.matches("<g class=\"wh-chart-slot\"").count(), 3);
    assert_eq!(svg.matches("class=\"wh-chart-ok\"").count(), 3);
    assert_eq!(svg.matches("class=\"wh-chart-bad\"").count(), 2);
    assert_eq!(svg.matches("class=\"wh-chart-p50\"").count(), 3);
    assert!(svg.contains("aria-label=\"Last 30 days, per UTC day: 21 attempts, 85.7% succeeded;"), "{svg}");

    // The other webhook sees only its own seven failures.
    let other = page(&h, 2);
    assert_eq!(cells(&other, "hours", "attempts")[23], "7");
    assert_eq!(cells(&other, "hours", "rate")[23], "0%");
    assert_eq!(cells(&other, "days", "attempts").iter().filter(|c| *c != "0").count(), 1);
}

#[test]
fn no_attempts_say_so_instead_of_an_empty_chart() {
    let h = at_now();
    let w = hook(&h, "https://a.example/", &["user.created"]);
    let html = page(&h, w);
    assert!(html.contains("No attempts in the last 30 days"), "{html}");
    assert!(!html.contains("<svg") && !html.contains("wh-health-table"), "{html}");
    // A test send alone is not the webhook's traffic.
    outbox::send_test(&h, w, "alice").unwrap();
    assert!(page(&h, w).contains("No attempts in the last 30 days"));
    // Three days ago only: the days chart, and a sentence for the hours.
    attempt(&h, "user.created", NOW - 3 * D, Some(200), 30);
    let html = page(&h, w);
    assert!(!html.contains("No attempts in the last 30 days"));
    assert!(part(&html, "id=\"wh-health-hours\"", "</div>").contains("No attempts in the last 24 hours."));
    assert_eq!(html.matches("<svg").count(), 1);
    assert!(html.contains("id=\"wh-health-table-days\"") && !html.contains("id=\"wh-health-table-hours\""));
}

/// Every rollup row, ordered: (webhook, hour, bucket, attempts, successes).
fn rollups(h: &TestHost) -> Vec<Vec<Value>> {
    h.query(
        "SELECT webhook_id, hour, bucket, attempts, successes FROM attempt_rollups ORDER BY webhook_id, hour, bucket",
        &[],
    )
    .unwrap()
    .rows
}

#[test]
fn the_migration_backfills_the_rollups_record_keeps() {
    let h = seeded();
    // Latencies on both sides of every bucket bound, in two hours.
    for (i, b) in health::BOUNDS_MS.iter().enumerate() {
        let at = NOW - (i as u64 % 2) * H;
        attempt(&h, "user.created", at, Some(200), *b);
        attempt(&h, "user.created", at, Some(503), b + 1);
    }
    attempt(&h, "user.created", NOW, Some(200), 0);
    let kept = rollups(&h);
    assert!(kept.len() > 20, "{kept:?}");
    let sum = |col: &str| h.int(&format!("SELECT SUM({col}) FROM attempt_rollups"), &[]);
    let real = "NOT EXISTS (SELECT 1 FROM deliveries d JOIN events e ON e.id = d.event_id \
                WHERE d.id = a.delivery_id AND e.type = 'test.webhook')";
    assert_eq!(sum("attempts"), h.int(&format!("SELECT COUNT(*) FROM attempts a WHERE {real}"), &[]));
    assert_eq!(sum("successes"), h.int(&format!("SELECT SUM(success) FROM attempts a WHERE {real}"), &[]));

    // A database from before the rollups: the migration builds the same rows
    // from the attempts (its SQL buckets agree with `health::bucket` at
    // every bound).
    // (Without what later versions added that cannot be added twice.)
    h.execute_batch(&format!(
        "DROP TABLE attempt_rollups; ALTER TABLE deliveries DROP COLUMN lease_owner; ALTER TABLE webhooks DROP COLUMN rate_limit; {} {}",
        crate::schema::DROP_14,
        crate::schema::DROP_16
    ))
    .unwrap();
    h.execute("DELETE FROM plugin_schema WHERE version >= ?1", &[Value::from(crate::schema::ROLLUPS_SINCE as i64)])
        .unwrap();
    crate::schema::migrate(&h).unwrap();
    assert_eq!(rollups(&h), kept);
    // Run again (a downgrade and upgrade): rebuilt, never doubled.
    h.execute_batch(&format!(
        "ALTER TABLE deliveries DROP COLUMN lease_owner; ALTER TABLE webhooks DROP COLUMN rate_limit; {} {}",
        crate::schema::DROP_14,
        crate::schema::DROP_16
    ))
    .unwrap();
    h.execute("DELETE FROM plugin_schema WHERE version >= ?1", &[Value::from(crate::schema::ROLLUPS_SINCE as i64)])
        .unwrap();
    crate::schema::migrate(&h).unwrap();
    assert_eq!(rollups(&h), kept);
    assert!(!h.in_transaction());
}

#[test]
fn rollups_are_pruned_with_the_history_and_the_webhook() {
    let h = at_now();
    h.settings_mut(|s| s.retention_ms = 2 * D);
    let w = hook(&h, "https://a.example/", &["user.created"]);
    for at in [NOW - 3 * D, NOW - 2 * D - H, NOW - H, NOW] {
        attempt(&h, "user.created", at, Some(200), 10);
    }
    let p = outbox::maintain(&h).unwrap();
    assert_eq!((p.attempts, p.rollups), (2, 2), "{p:?}");
    assert!(page(&h, w).contains("History is kept for 2 days, so older days show nothing."));
    let hours = |h: &TestHost| -> Vec<i64> { rollups(h).iter().map(|r| crate::host::Row(r).i64(1)).collect() };
    assert_eq!(hours(&h), [health::hour_of(NOW - H) as i64, health::hour_of(NOW) as i64]);
    // The hour the cutoff falls in stays until it has wholly passed.
    h.advance(2 * D + 1);
    let p = outbox::maintain(&h).unwrap();
    assert_eq!((p.attempts, p.rollups), (2, 1), "{p:?}");
    assert_eq!(hours(&h), [health::hour_of(NOW) as i64]);
    h.set_now(health::hour_of(NOW) + H + 2 * D);
    assert_eq!(outbox::maintain(&h).unwrap().rollups, 1);
    assert!(rollups(&h).is_empty());
    // Many old rows go in batches within one pass.
    h.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4500) \
         INSERT INTO attempt_rollups (webhook_id, hour, bucket, attempts, successes) \
         SELECT 100 + i, 3600000, 0, 1, 1 FROM n",
    )
    .unwrap();
    assert_eq!(outbox::maintain(&h).unwrap().rollups, 4500);
    assert!(rollups(&h).is_empty());
    // Deleting the webhook deletes its rollups.
    attempt(&h, "user.created", h.now_ms(), Some(200), 10);
    assert_eq!(rollups(&h).len(), 1);
    assert!(store::delete(&h, w).unwrap());
    assert!(rollups(&h).is_empty());
}

#[test]
fn a_page_reads_a_bounded_range_of_the_rollups_key() {
    let h = seeded();
    let plan = |sql: &str| -> Vec<String> {
        h.query(&format!("EXPLAIN QUERY PLAN {sql}"), &[1i64.into(), 0i64.into(), NOW.into()])
            .unwrap()
            .iter()
            .map(|r| r.str(3))
            .collect()
    };
    for sql in [health::HOURS_SQL, health::DAYS_SQL] {
        let p = plan(sql);
        assert!(!sql.contains("FROM attempts "), "never the attempts: {sql}");
        // (The days are grouped in a temporary b-tree of at most 30 × 17 rows.)
        assert!(
            p.iter().all(|l| l.starts_with("SEARCH attempt_rollups") || l.contains("TEMP B-TREE FOR GROUP BY")),
            "{p:#?}"
        );
        assert!(
            p[0].starts_with("SEARCH attempt_rollups USING INDEX sqlite_autoindex_attempt_rollups_1 (webhook_id=? AND hour>? AND hour<?)"),
            "{p:#?}"
        );
    }
    // Pruning finds old hours on their own index, not by scanning every row.
    let p: Vec<String> = h
        .query(&format!("EXPLAIN QUERY PLAN {}", health::PRUNE_SQL), &[NOW.into(), 2000u32.into()])
        .unwrap()
        .iter()
        .map(|r| r.str(3))
        .collect();
    assert!(p.iter().any(|l| l.contains("INDEX attempt_rollups_by_hour (hour<?)")), "{p:#?}");
}
