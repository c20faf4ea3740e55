//! When to try a request again, and how long to wait first.
//!
//! Transient failures are retried: dropped or refused connections, timeouts, `408`,
//! `429` and `5xx` other than `501 Not Implemented` and `505`. The wait doubles from
//! `base` up to `max`, with up to a quarter of random jitter so parallel workers do not
//! retry in step; a `Retry-After` in seconds is honoured up to `MAX_RETRY_AFTER`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest `Retry-After` airlift honours; a registry asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries of one request in all (the first included).
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 8, base: Duration::from_millis(250), max: Duration::from_secs(15) }
    }
}

impl RetryPolicy {
    /// Whether a response status is worth another try.
    pub fn retryable(status: u16) -> bool {
        matches!(status, 408 | 429) || (500..600).contains(&status) && !matches!(status, 501 | 505 | 507)
    }

    /// Whether try number `attempt` (1-based) may be followed by another.
    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.attempts
    }

    /// The wait before the try after try number `attempt` (1-based), without jitter.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(r) = retry_after {
            return r.min(MAX_RETRY_AFTER);
        }
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// `backoff` plus up to a quarter of random jitter (none on a `Retry-After`).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let d = self.backoff(attempt, retry_after);
        if retry_after.is_some() {
            return d;
        }
        let mut r = [0u8; 2];
        let frac = match getrandom::getrandom(&mut r) {
            Ok(()) => u16::from_le_bytes(r) as u32,
            Err(_) => 0,
        };
        d + d / 4 * frac / u16::MAX as u32
    }
}

/// The tries of one operation under a policy: every retry loop of the client counts,
/// decides and waits through this, so none spells out the backoff itself.
pub struct Tries<'a> {
    policy: RetryPolicy,
    failed: u32,
    retries: Option<&'a AtomicU64>,
}

impl<'a> Tries<'a> {
    /// Also count every retry in `retries` (the client's statistics).
    pub fn counting(self, retries: &'a AtomicU64) -> Tries<'a> {
        Tries { retries: Some(retries), ..self }
    }

    /// Record that the try just made failed in a way worth retrying. When the policy allows
    /// another, wait its backoff (or `retry_after`) and return true; else return false and
    /// leave the caller to give up.
    pub fn again(&mut self, retry_after: Option<Duration>) -> bool {
        self.failed += 1;
        if !self.policy.may_retry(self.failed) {
            return false;
        }
        if let Some(retries) = self.retries {
            retries.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(self.policy.delay(self.failed, retry_after));
        true
    }

    /// Count from zero again (a transfer that made progress before it dropped).
    pub fn restart(&mut self) {
        self.failed = 0;
    }

    /// How many tries failed so far (all of them, once `again` returned false).
    pub fn failed(&self) -> u32 {
        self.failed
    }
}

impl RetryPolicy {
    /// A fresh count of tries under this policy.
    pub fn tries<'a>(self) -> Tries<'a> {
        Tries { policy: self, failed: 0, retries: None }
    }
}

/// A `Retry-After` header in seconds (an HTTP date is not honoured: the backoff applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_statuses_are_retried() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(RetryPolicy::retryable(s), "{s}");
        }
        for s in [200, 206, 301, 400, 401, 403, 404, 416, 501, 505] {
            assert!(!RetryPolicy::retryable(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy { attempts: 5, base: Duration::from_millis(100), max: Duration::from_secs(1) };
        let waits: Vec<u64> = (1..=6).map(|a| p.backoff(a, None).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(1000, None), Duration::from_secs(1));
        assert!(p.may_retry(4) && !p.may_retry(5));
        for a in 1..6 {
            let d = p.delay(a, None);
            assert!(d >= p.backoff(a, None) && d <= p.backoff(a, None) * 5 / 4, "{a}: {d:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn tries_stop_at_the_policy_and_count_retries() {
        let p = RetryPolicy { attempts: 3, base: Duration::from_millis(1), max: Duration::from_millis(1) };
        let retries = AtomicU64::new(0);
        let mut tries = p.tries().counting(&retries);
        assert!(tries.again(None) && tries.again(None));
        assert!(!tries.again(None));
        assert_eq!(tries.failed(), 3);
        assert_eq!(retries.load(Ordering::Relaxed), 2);
        tries.restart();
        assert!(tries.again(None) && tries.failed() == 1);
    }
}
