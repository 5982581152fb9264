//! The retry and disable policy: pure functions of an attempt's facts and the
//! operator's settings. No storage, no clock, no randomness of its own, so
//! every rule is tested directly.

use super::Mode;
use super::state::DeliveryState;
use crate::host::OutResponse;

/// Upper bound for a receiver's `Retry-After`. A receiver may ask for a
/// pause, not park a delivery for days: past 6 hours the webhook's own
/// schedule (and the auto-disable clock) speaks for it, and an attempt
/// stays well inside the history's retention.
pub const MAX_RETRY_AFTER_MS: u64 = 6 * 60 * 60 * 1000;

/// When a new delivery first falls due: the schedule's first entry is the
/// delay before the first attempt (normally 0).
pub fn first_due(schedule_ms: &[u64], now_ms: u64) -> u64 {
    now_ms.saturating_add(schedule_ms.first().copied().unwrap_or(0))
}

/// What an attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub state: DeliveryState,
    /// When the next attempt falls due (for `retrying`).
    pub at_ms: Option<u64>,
}

/// The state after attempt number `attempt_no` (1-based) finished at
/// `finished_ms`. `schedule_ms[n]` is the delay before attempt `n + 1`, so
/// its length is the number of attempts. `random` jitters the delay by ±20 %.
pub fn after_attempt(
    schedule_ms: &[u64],
    attempt_no: u64,
    status: Option<u16>,
    retry_after_ms: Option<u64>,
    mode: Mode,
    finished_ms: u64,
    random: u32,
) -> Next {
    if status.is_some_and(is_success) {
        return Next { state: DeliveryState::Succeeded, at_ms: None };
    }
    if status == Some(410) || mode == Mode::Once {
        return Next { state: DeliveryState::Exhausted, at_ms: None };
    }
    match usize::try_from(attempt_no).ok().and_then(|n| schedule_ms.get(n)) {
        Some(&delay) => {
            let mut delay = jittered(delay, random);
            if let Some(ra) = retry_after_ms {
                delay = delay.max(ra.min(MAX_RETRY_AFTER_MS));
            }
            Next { state: DeliveryState::Retrying, at_ms: Some(finished_ms.saturating_add(delay)) }
        }
        None => Next { state: DeliveryState::Exhausted, at_ms: None },
    }
}

/// 2xx.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// A delay with ±20 % jitter; `r` is a uniformly random u32.
pub fn jittered(delay_ms: u64, r: u32) -> u64 {
    // factor in [0.8, 1.2]
    let factor = 0.8 + 0.4 * (f64::from(r) / f64::from(u32::MAX));
    (delay_ms as f64 * factor).round() as u64
}

/// Why a webhook should be disabled after a batch of its attempts, if it
/// should: a 410 Gone, or failures without a success for
/// `auto_disable_after_ms` since `failing_since`.
pub fn disable_reason(
    gone: bool,
    failing_since_ms: Option<u64>,
    finished_ms: u64,
    auto_disable_after_ms: u64,
) -> Option<String> {
    if gone {
        return Some("The endpoint answered 410 Gone.".to_owned());
    }
    let since = failing_since_ms?;
    let streak = finished_ms.saturating_sub(since);
    (streak >= auto_disable_after_ms).then(|| {
        format!(
            "Every delivery failed for {} without a success (since {}).",
            crate::admin::duration_words(streak),
            super::rfc3339(since)
        )
    })
}

/// `Retry-After` on 429 and 503 — delay-seconds or an HTTP-date — as a
/// delay in milliseconds from `now_ms`.
pub fn retry_after_ms(resp: &OutResponse, now_ms: u64) -> Option<u64> {
    if resp.status != 429 && resp.status != 503 {
        return None;
    }
    let v = resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))?.1.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(s.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(v).ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [u64; 3] = [0, 1_000, 60_000];

    #[test]
    fn first_entry_is_the_delay_before_the_first_attempt() {
        assert_eq!(first_due(&SCHEDULE, 500), 500);
        assert_eq!(first_due(&[2_000, 5_000], 500), 2_500);
        assert_eq!(first_due(&[], 500), 500);
    }

    #[test]
    fn schedule_then_exhausted() {
        let mid = u32::MAX / 2;
        let n = after_attempt(&SCHEDULE, 1, Some(500), None, Mode::Scheduled, 10_000, mid);
        assert_eq!(n.state, DeliveryState::Retrying);
        assert!((10_999..=11_001).contains(&n.at_ms.unwrap()));
        let n = after_attempt(&SCHEDULE, 2, None, None, Mode::Scheduled, 10_000, mid);
        assert!((69_999..=70_001).contains(&n.at_ms.unwrap()));
        let n = after_attempt(&SCHEDULE, 3, Some(500), None, Mode::Scheduled, 10_000, mid);
        assert_eq!(n, Next { state: DeliveryState::Exhausted, at_ms: None });
    }

    #[test]
    fn success_gone_and_one_offs() {
        let ok = after_attempt(&SCHEDULE, 1, Some(204), None, Mode::Scheduled, 0, 0);
        assert_eq!(ok.state, DeliveryState::Succeeded);
        let gone = after_attempt(&SCHEDULE, 1, Some(410), None, Mode::Scheduled, 0, 0);
        assert_eq!(gone.state, DeliveryState::Exhausted);
        let once = after_attempt(&SCHEDULE, 1, Some(500), None, Mode::Once, 0, 0);
        assert_eq!(once.state, DeliveryState::Exhausted);
        // A redirect is a failure.
        let redirect = after_attempt(&SCHEDULE, 1, Some(302), None, Mode::Scheduled, 0, 0);
        assert_eq!(redirect.state, DeliveryState::Retrying);
    }

    #[test]
    fn retry_after_lengthens_never_shortens_and_is_capped() {
        let n = after_attempt(&SCHEDULE, 1, Some(429), Some(30_000), Mode::Scheduled, 0, u32::MAX / 2);
        assert_eq!(n.at_ms, Some(30_000));
        let n = after_attempt(&SCHEDULE, 1, Some(429), Some(1), Mode::Scheduled, 0, u32::MAX / 2);
        assert!(n.at_ms.unwrap() >= 999);
        let n = after_attempt(&SCHEDULE, 1, Some(503), Some(u64::MAX), Mode::Scheduled, 0, 0);
        assert_eq!(n.at_ms, Some(MAX_RETRY_AFTER_MS));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(jittered(1000, 0), 800);
        assert_eq!(jittered(1000, u32::MAX), 1200);
        assert_eq!(jittered(0, 12345), 0);
        let mid = jittered(1000, u32::MAX / 2);
        assert!((999..=1001).contains(&mid));
    }

    #[test]
    fn disabling() {
        assert!(disable_reason(true, None, 0, 1000).unwrap().contains("410"));
        assert_eq!(disable_reason(false, None, 5000, 1000), None);
        assert_eq!(disable_reason(false, Some(4500), 5000, 1000), None);
        assert!(disable_reason(false, Some(3000), 5000, 1000).unwrap().starts_with("Every delivery failed"));
    }

    #[test]
    fn retry_after_forms() {
        let resp = |status: u16, v: &str| OutResponse {
            status,
            headers: vec![("Retry-After".into(), v.into())],
            body: Vec::new(),
            body_size: 0,
        };
        assert_eq!(retry_after_ms(&resp(429, "7"), 0), Some(7000));
        // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 s.
        let now = 1_445_412_470_000;
        assert_eq!(retry_after_ms(&resp(503, "Wed, 21 Oct 2015 07:28:00 GMT"), now), Some(10_000));
        assert_eq!(retry_after_ms(&resp(503, "Wed, 21 Oct 2015 07:28:00 GMT"), now + 60_000), Some(0));
        assert_eq!(retry_after_ms(&resp(500, "7"), 0), None);
        assert_eq!(retry_after_ms(&resp(429, "soon"), 0), None);
    }
}
