//! Adaptive polling: check often right after a change, back off while nothing happens.
use std::time::Duration;

/// Poll interval bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPolicy {
    /// First interval, and the interval right after the batch changed.
    pub initial: Duration,
    /// Longest interval.
    pub max: Duration,
    /// Growth per unchanged poll.
    pub factor: f64,
}

impl PollPolicy {
    /// For real providers: batches take minutes to hours.
    pub const PROVIDER: PollPolicy = PollPolicy {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(60),
        factor: 1.5,
    };

    /// For the simulator: batches take seconds.
    pub const SIMULATOR: PollPolicy = PollPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        factor: 1.5,
    };
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self::PROVIDER
    }
}

/// The interval state of one batch.
#[derive(Debug, Clone)]
pub struct Poller {
    policy: PollPolicy,
    current: Duration,
    last_seen: Option<String>,
}

impl Poller {
    /// Starts at the initial interval.
    pub fn new(policy: PollPolicy) -> Self {
        Self {
            policy,
            current: policy.initial,
            last_seen: None,
        }
    }

    /// The wait before the next poll, given what this poll saw (any status text).
    pub fn next_interval(&mut self, seen: &str) -> Duration {
        if self.last_seen.as_deref() == Some(seen) {
            self.current = self
                .current
                .mul_f64(self.policy.factor)
                .min(self.policy.max);
        } else {
            self.current = self.policy.initial;
            self.last_seen = Some(seen.to_owned());
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_while_unchanged_and_resets_on_change() {
        let mut p = Poller::new(PollPolicy::PROVIDER);
        assert_eq!(p.next_interval("a"), Duration::from_secs(5));
        assert_eq!(p.next_interval("a"), Duration::from_millis(7500));
        for _ in 0..20 {
            p.next_interval("a");
        }
        assert_eq!(p.next_interval("a"), Duration::from_secs(60));
        assert_eq!(p.next_interval("b"), Duration::from_secs(5));
    }
}
