//! Backoff for transient failures: exponential with full jitter, honouring `retry-after`.
use std::time::Duration;

/// How often and how long to retry a transient failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub max_retries: u32,
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// Longest delay between tries.
    pub max_delay: Duration,
    /// Longest `retry-after` honoured; longer requests fall back to backoff (as the SDKs do).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based). `retry_after` is the provider's request.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after
            && !after.is_zero()
            && after <= self.max_retry_after
        {
            // A little jitter on top so many clients do not come back in step.
            return after + after.mul_f64(fastrand::f64() * 0.1);
        }
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay);
        // Half fixed, half random: never hammers, never waits nothing.
        exp / 2 + exp.mul_f64(fastrand::f64() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_bounds() {
        let p = RetryPolicy::default();
        for retry in 0..30 {
            let d = p.delay(retry, None);
            let exp = p
                .base
                .saturating_mul(2u32.saturating_pow(retry.min(20)))
                .min(p.max_delay);
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?}");
        }
    }

    #[test]
    fn honours_retry_after_within_the_cap() {
        let p = RetryPolicy::default();
        let d = p.delay(0, Some(Duration::from_secs(7)));
        assert!(d >= Duration::from_secs(7) && d <= Duration::from_millis(7700));
        let d = p.delay(0, Some(Duration::from_secs(3600)));
        assert!(d <= p.base);
    }
}
