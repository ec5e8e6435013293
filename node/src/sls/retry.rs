//! Retry policy: exponential backoff with full jitter for transient faults, and a
//! longer, floor-bounded backoff for quota errors (the service asks us to slow
//! down, so an immediate retry would only be refused again).

use std::time::Duration;

use crate::sls::error::ErrorClass;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (first try included) for transient errors.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Attempts in all for quota errors (`Shard*QuotaExceed` ...).
    pub quota_max_attempts: u32,
    pub quota_base_delay: Duration,
    pub quota_max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            quota_max_attempts: 10,
            quota_base_delay: Duration::from_millis(500),
            quota_max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries at all: every error surfaces (for callers with their own loop).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            quota_max_attempts: 1,
            ..Default::default()
        }
    }

    /// The pause before the next attempt, after `attempt` (1-based) failed with
    /// an error of `class`; `None` when the error must surface.
    pub fn backoff(&self, class: ErrorClass, attempt: u32) -> Option<Duration> {
        let exp = |base: Duration, cap: Duration| {
            let factor = 1u32
                .checked_shl(attempt.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX);
            base.saturating_mul(factor).min(cap)
        };
        match class {
            ErrorClass::Permanent => None,
            ErrorClass::Transient if attempt < self.max_attempts => {
                // Full jitter: uniform in [0, ceiling].
                let ceiling = exp(self.base_delay, self.max_delay);
                Some(ceiling.mul_f64(fastrand::f64()))
            }
            ErrorClass::Quota if attempt < self.quota_max_attempts => {
                // Equal jitter: at least half the ceiling, so throttled calls do slow down.
                let ceiling = exp(self.quota_base_delay, self.quota_max_delay);
                Some(ceiling / 2 + (ceiling / 2).mul_f64(fastrand::f64()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_never_retry() {
        assert_eq!(
            RetryPolicy::default().backoff(ErrorClass::Permanent, 1),
            None
        );
    }

    #[test]
    fn transient_backoff_grows_is_capped_and_stops() {
        let p = RetryPolicy::default();
        for attempt in 1..p.max_attempts {
            let d = p.backoff(ErrorClass::Transient, attempt).unwrap();
            let ceiling = (p.base_delay * 2u32.pow(attempt - 1)).min(p.max_delay);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
        assert_eq!(p.backoff(ErrorClass::Transient, p.max_attempts), None);
        // Far past the cap, the shift must not overflow.
        let big = RetryPolicy {
            max_attempts: 100,
            ..Default::default()
        };
        assert!(big.backoff(ErrorClass::Transient, 99).unwrap() <= big.max_delay);
    }

    #[test]
    fn quota_backoff_has_a_floor() {
        let p = RetryPolicy::default();
        for attempt in 1..p.quota_max_attempts {
            let ceiling = (p.quota_base_delay * 2u32.pow(attempt - 1)).min(p.quota_max_delay);
            let d = p.backoff(ErrorClass::Quota, attempt).unwrap();
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
        assert_eq!(p.backoff(ErrorClass::Quota, p.quota_max_attempts), None);
    }
}
