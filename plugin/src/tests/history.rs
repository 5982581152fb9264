//! The admin history page (`admin::handle` on `/{id}/history`): keyset
//! paging by `before`/`after` row keys, the filters kept in every link, a
//! malformed key answering the first page, and a page query that seeks in
//! `attempts_history` instead of counting past an OFFSET.

use super::*;
use crate::admin::{self, Request, Response};
use crate::store::{HistoryFilter, HistoryKey};
use crate::testhost::T0;

/// The test host's mount path; every link starts with it.
const BASE: &str = "/admin/integrations/webhooks";
const PER_PAGE: usize = 25;

/// Webhook 1 with `n` deliveries of one attempt each. Every third event is
/// user.deleted, every fourth attempt failed (500). Start times repeat
/// (ties fall to the attempt id) and run against the insertion order, so
/// the page order is the (attempted_at, id) pair, not either alone.
fn seeded(n: u64) -> TestHost {
    let h = TestHost::new();
    assert_eq!(hook(&h, "https://a.example/", &["user.created", "user.deleted"]), 1);
    for i in 0..n {
        let t = if i % 3 == 0 { "user.deleted" } else { "user.created" };
        assert_eq!(raise(&h, &format!("e{i}"), t), 1);
        let claimed = claim(&h, 1).claimed;
        assert_eq!(claimed.len(), 1, "event {i}");
        let code = if i % 4 == 0 { 500 } else { 200 };
        let started_ms = T0 - ((i * 37) % 23) * 1_000;
        record(&h, vec![Finished { started_ms, ..status(&h, claimed[0], code) }]);
    }
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts", &[]), n as i64);
    h
}

/// The delivery ids of webhook 1's attempts in the page order, filtered as
/// `filter_sql` says (a condition on `a` and `e`).
fn expected(h: &TestHost, filter_sql: &str) -> Vec<i64> {
    h.query(
        &format!(
            "SELECT a.delivery_id FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             JOIN events e ON e.id = d.event_id WHERE a.webhook_id = 1 AND {filter_sql} \
             ORDER BY a.attempted_at DESC, a.id DESC"
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.i64(0))
    .collect()
}

/// A history page as the tests read it.
#[derive(Debug, PartialEq)]
struct Seen {
    rows: Vec<i64>,
    first: Option<String>,
    newer: Option<String>,
    older: Option<String>,
    html: String,
}

/// GETs `url` (a link as a page shows it, or a path under the mount).
fn get(h: &TestHost, url: &str) -> Seen {
    let rel = url.strip_prefix(BASE).unwrap_or(url);
    let (path, query) = rel.split_once('?').unwrap_or((rel, ""));
    let req = Request {
        method: "GET".into(),
        path: path.into(),
        query: query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        actor: "alice".into(),
        ..Request::default()
    };
    let Response::Page { status, fragment: html, .. } = admin::handle(h, &req) else {
        panic!("{url}: not a page");
    };
    assert_eq!(status, 200, "{url}: {html}");
    assert!(!h.in_transaction());
    let rows = html.split("data-delivery-id=\"").skip(1).map(|s| s[..s.find('"').unwrap()].parse().unwrap()).collect();
    Seen { rows, first: link(&html, "first"), newer: link(&html, "prev"), older: link(&html, "next"), html }
}

/// The href of the pager link with this `rel`, unescaped.
fn link(html: &str, rel: &str) -> Option<String> {
    let end = html.find(&format!("\" rel=\"{rel}\""))?;
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    Some(html[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// Follows "Older" from `start` to the end, then "Newer" back to the top;
/// answers both walks' pages.
fn walk(h: &TestHost, start: &str) -> (Vec<Seen>, Vec<Seen>) {
    let mut down = vec![get(h, start)];
    while let Some(next) = down.last().unwrap().older.clone() {
        assert!(next.contains("before=") && !next.contains("page="), "{next}");
        down.push(get(h, &next));
        assert!(down.len() < 100, "Older never ends");
    }
    let mut up = vec![down.pop().unwrap()];
    while let Some(prev) = up.last().unwrap().newer.clone() {
        assert!(prev.contains("after=") && !prev.contains("page="), "{prev}");
        up.push(get(h, &prev));
        assert!(up.len() < 100, "Newer never ends");
    }
    down.push(up.remove(0));
    (down, up)
}

#[test]
fn older_to_the_end_and_newer_back_see_every_row_once_in_order() {
    let h = seeded(65);
    let all = expected(&h, "1");
    assert_eq!(all.len(), 65);
    let mut by_id = all.clone();
    by_id.sort_unstable_by(|a, b| b.cmp(a));
    assert_ne!(all, by_id, "the data must tell the (time, id) order from the id order");

    let (down, up) = walk(&h, "/1/history");
    assert_eq!(down.iter().map(|p| p.rows.len()).collect::<Vec<_>>(), [25, 25, 15]);
    assert_eq!(down.iter().flat_map(|p| p.rows.clone()).collect::<Vec<_>>(), all, "Older: each row once, in order");
    assert_eq!(&down[0].rows, &all[..PER_PAGE], "the first page is the newest rows, as before");

    // The first page links only Older; every other page links the first page.
    let top = &down[0];
    assert_eq!((&top.first, &top.newer), (&None, &None));
    assert!(top.html.contains("Older →") && !top.html.contains("← Newer") && !top.html.contains("« Newest"));
    for p in &down[1..] {
        assert_eq!(p.first.as_deref(), Some(format!("{BASE}/1/history").as_str()));
        assert!(p.html.contains("← Newer") && p.html.contains("« Newest"));
    }
    assert_eq!(down.last().unwrap().older, None, "nothing past the oldest row");
    // The links carry the boundary rows' (attempted_at, id).
    let keys: Vec<HistoryKey> = h
        .query("SELECT attempted_at, id FROM attempts WHERE webhook_id = 1 ORDER BY attempted_at DESC, id DESC", &[])
        .unwrap()
        .iter()
        .map(|r| HistoryKey { attempted_at: r.u64(0), id: r.i64(1) })
        .collect();
    let key = |i: usize| keys[i];
    assert!(
        [PER_PAGE, 2 * PER_PAGE].iter().all(|&b| key(b - 1).attempted_at == key(b).attempted_at),
        "each page boundary splits attempts of one millisecond, so the id half of the key counts"
    );
    assert_eq!(top.older.as_deref(), Some(format!("{BASE}/1/history?before={}", key(PER_PAGE - 1)).as_str()));
    assert_eq!(down[1].newer.as_deref(), Some(format!("{BASE}/1/history?after={}", key(PER_PAGE)).as_str()));

    // Newer walks the same pages back, the last of them the first page itself.
    assert_eq!(up.len(), 2);
    assert_eq!(up[0], down[1], "Newer from the last page shows the page before it");
    assert_eq!(up[1].rows, down[0].rows);
    assert_eq!((&up[1].first, &up[1].newer, &up[1].older), (&None, &None, &top.older), "Newer reaches the first page");
    let mut back: Vec<i64> = Vec::new();
    for p in std::iter::once(down.last().unwrap()).chain(up.iter()) {
        back.splice(0..0, p.rows.iter().copied());
    }
    assert_eq!(back, all, "Newer: each row once, in order");
}

#[test]
fn the_filters_stay_in_every_link() {
    let h = seeded(65);
    let want = expected(&h, "a.success = 1 AND e.type = 'user.created'");
    assert!(want.len() > PER_PAGE, "two pages at least: {}", want.len());
    let (down, up) = walk(&h, "/1/history?status=success&event=user.created");
    assert!(down.len() >= 2);
    assert_eq!(down.iter().flat_map(|p| p.rows.clone()).collect::<Vec<_>>(), want);
    assert_eq!(up.last().unwrap().rows, down[0].rows);
    for p in down.iter().chain(up.iter()) {
        for l in [&p.first, &p.newer, &p.older].into_iter().flatten() {
            assert!(l.starts_with(&format!("{BASE}/1/history?")), "{l}");
            assert!(l.contains("status=success") && l.contains("event=user.created"), "{l} drops a filter");
        }
    }
    assert_eq!(down[1].first.as_deref(), Some(format!("{BASE}/1/history?status=success&event=user.created").as_str()));

    // Failures of user.deleted: one short page, no links.
    let failed = get(&h, "/1/history?status=failed&event=user.deleted");
    assert_eq!(failed.rows, expected(&h, "a.success = 0 AND e.type = 'user.deleted'"));
    assert!(!failed.rows.is_empty());
    assert_eq!((failed.first, failed.newer, failed.older), (None, None, None));
}

#[test]
fn a_malformed_key_answers_the_first_page() {
    let h = seeded(30);
    let first = get(&h, "/1/history");
    let first_failed = get(&h, "/1/history?status=failed");
    assert_eq!(first.rows.len(), PER_PAGE);
    let deep = get(&h, first.older.as_deref().unwrap());
    let valid = deep.newer.clone().unwrap();
    let valid_key = valid.split("after=").nth(1).unwrap().to_owned();
    for bad in [
        "",
        "x",
        "12",
        "12_",
        "_5",
        "12_0",
        "12_-1",
        "-1_5",
        "+1_5",
        "1.5_2",
        "1_2_3",
        " 1_2",
        "1_2 ",
        "%31_2",
        "99999999999999999999_1",
        "9223372036854775808_1",
        "1_9223372036854775808",
        "١٢_٣",
    ] {
        for name in ["before", "after"] {
            let p = get(&h, &format!("/1/history?{name}={bad}"));
            assert_eq!(p, first, "{name}={bad:?}");
            let p = get(&h, &format!("/1/history?status=failed&{name}={bad}"));
            assert_eq!(p, first_failed, "{name}={bad:?} with a filter");
        }
    }
    // Both keys at once, and the old page numbers of bookmarks.
    assert_eq!(get(&h, &format!("/1/history?before={valid_key}&after={valid_key}")), first);
    assert_eq!(get(&h, &format!("/1/history?before={valid_key}&after=x")), first);
    assert_eq!(get(&h, "/1/history?page=2"), first);
    assert_eq!(get(&h, "/1/history?page=abc"), first);
    // A well-formed key past every row: an empty deep page that leads home.
    let empty = get(&h, "/1/history?before=0_1");
    assert!(empty.rows.is_empty() && empty.html.contains("No deliveries on this page yet"));
    assert_eq!(
        (empty.first.as_deref(), &empty.newer, &empty.older),
        (Some(&*format!("{BASE}/1/history")), &None, &None)
    );
    // Newer than every row is the top: the first page.
    assert_eq!(get(&h, &format!("/1/history?after={}_{}", i64::MAX, i64::MAX)), first);
}

#[test]
fn the_page_query_seeks_in_the_history_index_without_offset() {
    let h = seeded(3);
    let key = HistoryKey { attempted_at: T0, id: 2 };
    let filters = [
        HistoryFilter::default(),
        HistoryFilter { success: Some(false), event_type: None },
        HistoryFilter { success: None, event_type: Some("user.created".into()) },
        HistoryFilter { success: Some(true), event_type: Some("user.deleted".into()) },
    ];
    for filter in &filters {
        for (from, older) in [(None, true), (Some(key), true), (Some(key), false)] {
            let (sql, params) = store::history_query(1, filter, from, older, 26);
            assert!(!sql.to_ascii_uppercase().contains("OFFSET"), "{sql}");
            let plan: Vec<String> =
                h.query(&format!("EXPLAIN QUERY PLAN {sql}"), &params).unwrap().iter().map(|r| r.str(3)).collect();
            let what = format!("{filter:?} from {from:?} older {older}: {plan:#?}");
            let attempts = plan.iter().find(|l| l.contains(" a ")).unwrap_or_else(|| panic!("{what}"));
            assert!(attempts.starts_with("SEARCH a USING INDEX attempts_history (webhook_id=?"), "{what}");
            if from.is_some() {
                // SQLite shows the row-value bound by its first column; the
                // id half narrows the rows at that time (the paging tests
                // split ties across pages).
                let bound = if older { "attempted_at<?" } else { "attempted_at>?" };
                assert!(attempts.contains(bound), "the key bounds the seek: {what}");
            }
            assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "the index gives the order: {what}");
        }
    }
}

/// #13 item 14: each page says where it is and how many there are, under
/// the filter too.
#[test]
fn each_page_says_where_it_is_among_how_many() {
    let h = seeded(65);
    let (older, _) = walk(&h, &format!("{BASE}/1/history"));
    let spans: Vec<bool> = ["1–25 of 65", "26–50 of 65", "51–65 of 65"]
        .iter()
        .zip(&older)
        .map(|(want, page)| page.html.contains(want))
        .collect();
    assert_eq!(spans, [true, true, true], "{:?}", older.iter().map(|p| p.rows.len()).collect::<Vec<_>>());
    let failed = expected(&h, "a.success = 0").len();
    let page = get(&h, &format!("{BASE}/1/history?status=failed"));
    assert!(page.html.contains(&format!("1–{failed} of {failed}")), "{}", page.html);
}

/// #13 item 13: a failed test is not "gave up after every retry", and
/// "Retry failed" leaves it alone.
#[test]
fn failed_tests_are_not_counted_as_given_up() {
    let h = TestHost::new();
    let w = hook(&h, "https://a.example/", &["user.created"]);
    h.respond(|_| crate::testhost::Reply::status(500));
    crate::outbox::send_test(&h, w, "alice").unwrap().unwrap();
    assert_eq!(crate::store::exhausted_count(&h, w).unwrap(), 0);
    assert_eq!(crate::outbox::retry_failed_since(&h, w, 0).unwrap(), 0);
    let page = get(&h, &format!("{BASE}/{w}/history"));
    assert!(!page.html.contains("gave up after every retry"), "{}", page.html);
}
