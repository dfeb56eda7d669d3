//! The timeline shared by the OpenAI and Gemini batches: validation in the first tenth of the
//! processing time, work in the middle eight tenths, finalization in the last tenth.
//!
//! Everything is evaluated lazily against `tokio::time::Instant`, like the Anthropic batches,
//! so tests with a paused tokio clock drive batches without sleeping.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

/// A cancel: when it came and how much of the work was done by then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CancelMark {
    pub(crate) at: Instant,
    pub(crate) at_wall: Timestamp,
    /// Fraction of the work window done when the cancel came, in `[0, 1]`.
    pub(crate) fraction: f64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    pub(crate) created: Instant,
    pub(crate) created_at: Timestamp,
    processing: Duration,
    /// When processing ends (brought forward by a cancel).
    pub(crate) ends: Instant,
    pub(crate) cancel: Option<CancelMark>,
}

impl Timeline {
    pub(crate) fn new(now: Instant, wall: Timestamp, processing: Duration) -> Self {
        Self {
            created: now,
            created_at: wall,
            processing,
            ends: now + processing,
            cancel: None,
        }
    }

    /// End of validation (OpenAI `validating`, Gemini `PENDING`).
    pub(crate) fn validated(&self) -> Instant {
        self.created + self.processing / 10
    }

    /// Start of finalization (OpenAI `finalizing`): the work window is over.
    pub(crate) fn work_done(&self) -> Instant {
        self.created + self.processing / 10 * 9
    }

    /// Fraction of the work window `[validated, work_done)` elapsed at `now`, in `[0, 1]`;
    /// frozen at the cancel.
    pub(crate) fn progress(&self, now: Instant) -> f64 {
        if let Some(c) = self.cancel {
            return c.fraction;
        }
        self.raw_progress(now)
    }

    fn raw_progress(&self, now: Instant) -> f64 {
        let start = self.validated();
        let end = self.work_done();
        if now < start {
            return 0.0;
        }
        if end <= start || now >= end {
            return 1.0;
        }
        (now.duration_since(start).as_secs_f64() / end.duration_since(start).as_secs_f64())
            .clamp(0.0, 1.0)
    }

    /// Records a cancel at `now`; processing then ends within `grace`.
    pub(crate) fn cancel(&mut self, now: Instant, wall: Timestamp, grace: Duration) {
        let fraction = self.raw_progress(now);
        let remaining = self.ends.saturating_duration_since(now);
        self.ends = now + remaining.min(grace);
        self.cancel = Some(CancelMark {
            at: now,
            at_wall: wall,
            fraction,
        });
    }

    /// The wall-clock time of `at` (created_at plus the tokio time elapsed).
    pub(crate) fn wall(&self, at: Instant) -> Timestamp {
        let offset = at.saturating_duration_since(self.created);
        self.created_at
            .saturating_add(SignedDuration::try_from(offset).unwrap_or(SignedDuration::MAX))
            .unwrap_or(self.created_at)
    }

    /// `created_at + d` (clamped).
    pub(crate) fn wall_after(&self, d: SignedDuration) -> Timestamp {
        self.created_at.saturating_add(d).unwrap_or(self.created_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phases_split_the_processing_time() {
        let t = Timeline::new(
            Instant::now(),
            Timestamp::UNIX_EPOCH,
            Duration::from_secs(10),
        );
        assert_eq!(t.validated(), t.created + Duration::from_secs(1));
        assert_eq!(t.work_done(), t.created + Duration::from_secs(9));
        assert_eq!(t.progress(t.created), 0.0);
        assert_eq!(t.progress(t.created + Duration::from_secs(5)), 0.5);
        assert_eq!(t.progress(t.ends), 1.0);
        assert_eq!(
            t.wall(t.created + Duration::from_secs(3)).as_second(),
            3,
            "wall times follow the tokio clock"
        );
        let zero = Timeline::new(Instant::now(), Timestamp::UNIX_EPOCH, Duration::ZERO);
        assert_eq!(zero.progress(zero.created), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_freezes_progress_and_brings_the_end_forward() {
        let mut t = Timeline::new(
            Instant::now(),
            Timestamp::UNIX_EPOCH,
            Duration::from_secs(10),
        );
        let at = t.created + Duration::from_secs(3);
        t.cancel(at, Timestamp::UNIX_EPOCH, Duration::from_millis(200));
        assert_eq!(t.ends, at + Duration::from_millis(200));
        assert_eq!(t.progress(t.created + Duration::from_secs(8)), 0.25);
    }
}
