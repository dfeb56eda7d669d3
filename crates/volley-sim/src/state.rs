//! In-memory simulator state: batches with their compact per-request records, submission
//! counts per `custom_id`, stats and fault counters.
//!
//! Lifecycle is evaluated lazily on every read against `tokio::time::Instant`, so tests that
//! pause the tokio clock drive batches without sleeping.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::SimStats;
use crate::answer::Style;
use crate::hash::{StableHasher, mix2, mix64, opaque_id, parse_base62, push_base62, unit};

/// How long a canceled batch takes at most to reach `ended`.
pub(crate) const CANCEL_GRACE: Duration = Duration::from_millis(200);
/// Batches expire (`expires_at`) this long after creation.
const EXPIRY: SignedDuration = SignedDuration::from_hours(24);

const BATCH_PREFIX: &str = "msgbatch_01";
const SEQ_WIDTH: usize = 7;

/// What happens to a request, decided at submit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Succeed,
    /// Transient server error (`api_error`), from `error_rate`.
    ApiError,
    /// `expired`, from `expired_rate`.
    Expired,
    /// Params failed validation: `errored` with `invalid_request_error`.
    Invalid,
}

/// The compact record kept per batch request.
#[derive(Debug)]
pub(crate) struct Rec {
    pub(crate) custom_id: Box<str>,
    pub(crate) model: Arc<str>,
    pub(crate) style: Style,
    /// Why the request is invalid, when `fate == Invalid`.
    pub(crate) invalid: Option<Box<Invalid>>,
    /// Gemini inline requests: their `metadata`, echoed on the response (raw JSON).
    pub(crate) meta: Option<Box<RawValue>>,
    /// The citation the answer carries (requests with citations enabled).
    pub(crate) citation: Option<Box<serde_json::Value>>,
    pub(crate) content_hash: u64,
    pub(crate) fate_hash: u64,
    pub(crate) input_tokens: u32,
    pub(crate) max_tokens: u32,
    pub(crate) fate: Fate,
}

/// A request that failed validation: the message, and for OpenAI the `param` and `code` of
/// the error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<&'static str>,
}

impl Invalid {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub(crate) fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub(crate) fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

/// The final result type of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Errored,
    Canceled,
    Expired,
}

impl Rec {
    /// Where in the processing window this request completes, in `[0, 1)`.
    fn progress_point(&self) -> f64 {
        unit(mix64(self.fate_hash ^ 0xc0ff_ee00_d15e_a5e5))
    }

    /// Whether the request is done once `fraction` of the work window has passed.
    pub(crate) fn done_by(&self, fraction: f64) -> bool {
        fraction >= 1.0 || self.progress_point() < fraction
    }

    pub(crate) fn outcome(&self, cancel_fraction: Option<f64>) -> Outcome {
        if let Some(f) = cancel_fraction
            && self.progress_point() >= f
        {
            return Outcome::Canceled;
        }
        match self.fate {
            Fate::Succeed => Outcome::Succeeded,
            Fate::ApiError | Fate::Invalid => Outcome::Errored,
            Fate::Expired => Outcome::Expired,
        }
    }
}

/// Immutable batch contents, shared with results streams.
#[derive(Debug)]
pub(crate) struct BatchData {
    pub(crate) seq: u64,
    pub(crate) seed: u64,
    pub(crate) shuffle: bool,
    pub(crate) records: Vec<Rec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Counts {
    pub(crate) processing: u64,
    pub(crate) succeeded: u64,
    pub(crate) errored: u64,
    pub(crate) canceled: u64,
    pub(crate) expired: u64,
}

#[derive(Debug, Clone, Copy)]
struct Cancel {
    at_wall: Timestamp,
    fraction: f64,
}

#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) id: String,
    created: Instant,
    created_at: Timestamp,
    ends: Instant,
    cancel: Option<Cancel>,
    ended: Option<Counts>,
    pub(crate) data: Arc<BatchData>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    InProgress,
    Canceling,
    Ended,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Canceling => "canceling",
            Status::Ended => "ended",
        }
    }
}

/// A snapshot of a batch for serialization.
#[derive(Debug, Clone)]
pub(crate) struct BatchView {
    pub(crate) id: String,
    pub(crate) status: Status,
    pub(crate) counts: Counts,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) ended_at: Option<Timestamp>,
    pub(crate) cancel_initiated_at: Option<Timestamp>,
}

impl Batch {
    fn refresh(&mut self, now: Instant) {
        if self.ended.is_none() && now >= self.ends {
            let fraction = self.cancel.map(|c| c.fraction);
            let mut c = Counts::default();
            for r in &self.data.records {
                match r.outcome(fraction) {
                    Outcome::Succeeded => c.succeeded += 1,
                    Outcome::Errored => c.errored += 1,
                    Outcome::Canceled => c.canceled += 1,
                    Outcome::Expired => c.expired += 1,
                }
            }
            self.ended = Some(c);
        }
    }

    pub(crate) fn status(&self) -> Status {
        if self.ended.is_some() {
            Status::Ended
        } else if self.cancel.is_some() {
            Status::Canceling
        } else {
            Status::InProgress
        }
    }

    /// The cancel fraction, once ended (what the results stream needs).
    pub(crate) fn cancel_fraction(&self) -> Option<f64> {
        self.cancel.map(|c| c.fraction)
    }

    pub(crate) fn view(&self) -> BatchView {
        let counts = self.ended.unwrap_or(Counts {
            processing: self.data.records.len() as u64,
            ..Counts::default()
        });
        let elapsed = self.ends.duration_since(self.created);
        BatchView {
            id: self.id.clone(),
            status: self.status(),
            counts,
            created_at: self.created_at,
            expires_at: self
                .created_at
                .saturating_add(EXPIRY)
                .unwrap_or(self.created_at),
            ended_at: self.ended.map(|_| {
                self.created_at
                    .saturating_add(
                        SignedDuration::try_from(elapsed).unwrap_or(SignedDuration::MAX),
                    )
                    .unwrap_or(self.created_at)
            }),
            cancel_initiated_at: self.cancel.map(|c| c.at_wall),
        }
    }
}

/// Why a batch operation was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    NotFound,
    WrongState(Status),
}

/// One page of the batch list.
pub(crate) struct Page {
    pub(crate) data: Vec<BatchView>,
    pub(crate) has_more: bool,
}

/// Which way a list page goes.
pub(crate) enum Cursor {
    First,
    /// Older than this sequence number.
    After(u64),
    /// Newer than this sequence number.
    Before(u64),
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    batches: BTreeMap<u64, Batch>,
    next_seq: u64,
    submissions: HashMap<Box<str>, u32>,
    pub(crate) stats: SimStats,
    /// `/v1` calls since the knobs were last set (drives `*_every`).
    pub(crate) fault_counter: u64,
    /// Server faults injected so far (alternates 529 / 500).
    pub(crate) server_faults: u64,
    counter: u64,
    /// OpenAI batches.
    pub(crate) openai: crate::openai::Store,
    /// Gemini batches.
    pub(crate) gemini: crate::gemini::Store,
    /// OpenAI and Gemini files (uploaded and generated), and Gemini upload sessions.
    pub(crate) files: crate::files::Store,
}

/// Parameters of a create that come from the config at that moment.
pub(crate) struct CreateKnobs {
    pub(crate) processing: Duration,
    pub(crate) error_rate: f64,
    pub(crate) expired_rate: f64,
    pub(crate) seed: u64,
    pub(crate) shuffle: bool,
}

impl Inner {
    /// A fresh value for opaque ids (request ids, message ids).
    pub(crate) fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Clears batches, submissions, stats and fault counters; sequence numbers continue so old
    /// ids never resolve to new batches.
    pub(crate) fn reset(&mut self) {
        let next_seq = self.next_seq;
        let counter = self.counter;
        let openai = self.openai.emptied();
        let gemini = self.gemini.emptied();
        let files = self.files.emptied();
        *self = Inner {
            next_seq,
            counter,
            openai,
            gemini,
            files,
            ..Inner::default()
        };
    }

    fn fate(fate_hash: u64, knobs: &CreateKnobs) -> Fate {
        let u = unit(fate_hash);
        if u < knobs.error_rate {
            Fate::ApiError
        } else if u < knobs.error_rate + knobs.expired_rate {
            Fate::Expired
        } else {
            Fate::Succeed
        }
    }

    /// Brings the OpenAI and Gemini batches up to `now`: finished ones get their result files.
    pub(crate) fn refresh(&mut self, now: Instant) {
        self.openai.refresh(now, &mut self.files);
        self.gemini.refresh(now, &mut self.files);
    }

    /// Decides the fates of a new batch's records (where the submission counts are) and
    /// counts the batch in the stats.
    pub(crate) fn register(&mut self, records: &mut [Rec], knobs: &CreateKnobs) {
        let mut salt = None;
        for (index, rec) in records.iter_mut().enumerate() {
            if rec.custom_id.is_empty() {
                // No id to track (a Gemini request without a key): a fate of its own.
                let salt = *salt.get_or_insert_with(|| self.next_counter());
                let mut h = StableHasher::new(knobs.seed);
                h.u64(salt);
                h.u64(index as u64);
                rec.fate_hash = h.finish();
                if rec.fate != Fate::Invalid {
                    rec.fate = Self::fate(rec.fate_hash, knobs);
                }
                continue;
            }
            let count = self.submissions.entry(rec.custom_id.clone()).or_insert(0);
            let before = *count;
            *count += 1;
            if before > 0 {
                self.stats.duplicate_submissions += 1;
            }
            self.stats.max_submissions_per_custom_id = self
                .stats
                .max_submissions_per_custom_id
                .max(u64::from(*count));
            let mut h = StableHasher::new(knobs.seed);
            h.str(&rec.custom_id);
            h.u64(u64::from(before));
            rec.fate_hash = h.finish();
            if rec.fate != Fate::Invalid {
                rec.fate = Self::fate(rec.fate_hash, knobs);
            }
        }
        self.stats.batches_created += 1;
        self.stats.requests_submitted += records.len() as u64;
    }

    /// Creates a batch from records prepared outside the lock (envelope already checked); the
    /// fates are decided here, where the submission counts are.
    pub(crate) fn create(
        &mut self,
        mut records: Vec<Rec>,
        knobs: &CreateKnobs,
        now: Instant,
        wall: Timestamp,
    ) -> BatchView {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.register(&mut records, knobs);
        let mut id = String::from(BATCH_PREFIX);
        push_base62(&mut id, seq, SEQ_WIDTH);
        let tail = opaque_id("", mix2(knobs.seed, seq));
        id.push_str(&tail[2..17]);
        let mut batch = Batch {
            id,
            created: now,
            created_at: wall,
            ends: now + knobs.processing,
            cancel: None,
            ended: None,
            data: Arc::new(BatchData {
                seq,
                seed: knobs.seed,
                shuffle: knobs.shuffle,
                records,
            }),
        };
        batch.refresh(now);
        let view = batch.view();
        self.batches.insert(seq, batch);
        view
    }

    fn seq_of(id: &str) -> Option<u64> {
        let rest = id.strip_prefix(BATCH_PREFIX)?;
        parse_base62(rest.get(..SEQ_WIDTH)?)
    }

    /// The batch with this id, refreshed to `now`.
    pub(crate) fn get(&mut self, id: &str, now: Instant) -> Result<&mut Batch, Refusal> {
        let seq = Self::seq_of(id).ok_or(Refusal::NotFound)?;
        let batch = self.batches.get_mut(&seq).ok_or(Refusal::NotFound)?;
        if batch.id != id {
            return Err(Refusal::NotFound);
        }
        batch.refresh(now);
        Ok(batch)
    }

    pub(crate) fn cancel(
        &mut self,
        id: &str,
        now: Instant,
        wall: Timestamp,
    ) -> Result<BatchView, Refusal> {
        let batch = self.get(id, now)?;
        let status = batch.status();
        if status != Status::InProgress {
            return Err(Refusal::WrongState(status));
        }
        let total = batch.ends.duration_since(batch.created);
        let elapsed = now.duration_since(batch.created);
        let fraction = if total.is_zero() {
            1.0
        } else {
            (elapsed.as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0)
        };
        let remaining = batch.ends.duration_since(now);
        batch.ends = now + remaining.min(CANCEL_GRACE);
        batch.cancel = Some(Cancel {
            at_wall: wall,
            fraction,
        });
        batch.refresh(now);
        Ok(batch.view())
    }

    pub(crate) fn delete(&mut self, id: &str, now: Instant) -> Result<String, Refusal> {
        let batch = self.get(id, now)?;
        let status = batch.status();
        if status != Status::Ended {
            return Err(Refusal::WrongState(status));
        }
        let seq = batch.data.seq;
        let id = batch.id.clone();
        self.batches.remove(&seq);
        Ok(id)
    }

    /// A page of batches, newest first. `cursor_id` ids that do not parse are refused.
    pub(crate) fn list(&mut self, cursor: Cursor, limit: usize, now: Instant) -> Page {
        let (seqs, has_more): (Vec<u64>, bool) = match cursor {
            Cursor::First => {
                let mut it = self.batches.keys().rev().copied();
                let page: Vec<u64> = it.by_ref().take(limit).collect();
                (page, it.next().is_some())
            }
            Cursor::After(c) => {
                let mut it = self.batches.range(..c).rev().map(|(k, _)| *k);
                let page: Vec<u64> = it.by_ref().take(limit).collect();
                (page, it.next().is_some())
            }
            Cursor::Before(c) => {
                let mut it = self.batches.range(c.saturating_add(1)..).map(|(k, _)| *k);
                let mut page: Vec<u64> = it.by_ref().take(limit).collect();
                let more = it.next().is_some();
                page.reverse();
                (page, more)
            }
        };
        let mut data = Vec::with_capacity(seqs.len());
        for s in seqs {
            if let Some(b) = self.batches.get_mut(&s) {
                b.refresh(now);
                data.push(b.view());
            }
        }
        Page { data, has_more }
    }

    /// Parses a list cursor id.
    pub(crate) fn cursor_seq(id: &str) -> Option<u64> {
        Self::seq_of(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(ids: &[&str]) -> Vec<Rec> {
        ids.iter()
            .map(|id| Rec {
                custom_id: (*id).into(),
                model: Arc::from("m"),
                style: Style::Sentence,
                invalid: None,
                meta: None,
                citation: None,
                content_hash: 1,
                fate_hash: 0,
                input_tokens: 10,
                max_tokens: 10,
                fate: Fate::Succeed,
            })
            .collect()
    }

    fn knobs(ms: u64) -> CreateKnobs {
        CreateKnobs {
            processing: Duration::from_millis(ms),
            error_rate: 0.0,
            expired_rate: 0.0,
            seed: 0,
            shuffle: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lifecycle_follows_the_tokio_clock() {
        let mut inner = Inner::default();
        let wall = Timestamp::now();
        let v = inner.create(prepared(&["a", "b"]), &knobs(2000), Instant::now(), wall);
        assert_eq!(v.status, Status::InProgress);
        assert_eq!(v.counts.processing, 2);
        tokio::time::advance(Duration::from_millis(1999)).await;
        let b = inner.get(&v.id, Instant::now()).unwrap();
        assert_eq!(b.status(), Status::InProgress);
        assert_eq!(b.view().counts.succeeded, 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        let view = inner.get(&v.id, Instant::now()).unwrap().view();
        assert_eq!(view.status, Status::Ended);
        assert_eq!(view.counts.succeeded, 2);
        assert_eq!(view.counts.processing, 0);
        assert_eq!(
            view.ended_at.unwrap().duration_since(view.created_at),
            SignedDuration::from_secs(2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_ends_soon_with_canceled_requests() {
        let mut inner = Inner::default();
        let ids: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let v = inner.create(
            prepared(&refs),
            &knobs(10_000),
            Instant::now(),
            Timestamp::now(),
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        let c = inner
            .cancel(&v.id, Instant::now(), Timestamp::now())
            .unwrap();
        assert_eq!(c.status, Status::Canceling);
        assert!(c.cancel_initiated_at.is_some());
        assert!(matches!(
            inner.cancel(&v.id, Instant::now(), Timestamp::now()),
            Err(Refusal::WrongState(Status::Canceling))
        ));
        assert!(matches!(
            inner.delete(&v.id, Instant::now()),
            Err(Refusal::WrongState(Status::Canceling))
        ));
        tokio::time::advance(CANCEL_GRACE).await;
        let e = inner.get(&v.id, Instant::now()).unwrap().view();
        assert_eq!(e.status, Status::Ended);
        let c = e.counts;
        assert_eq!(c.succeeded + c.canceled, 100);
        // About half were done when the cancel came.
        assert!((25..=75).contains(&c.canceled), "{c:?}");
        inner.delete(&v.id, Instant::now()).unwrap();
        assert!(matches!(
            inner.get(&v.id, Instant::now()),
            Err(Refusal::NotFound)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_and_paging() {
        let mut inner = Inner::default();
        let now = Instant::now;
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(
                inner
                    .create(prepared(&["x", "y"]), &knobs(0), now(), Timestamp::now())
                    .id,
            );
        }
        assert_eq!(inner.stats.duplicate_submissions, 8);
        assert_eq!(inner.stats.max_submissions_per_custom_id, 5);
        assert_eq!(inner.stats.requests_submitted, 10);
        let page = inner.list(Cursor::First, 2, now());
        let got: Vec<_> = page.data.iter().map(|b| b.id.clone()).collect();
        assert_eq!(got, vec![ids[4].clone(), ids[3].clone()]);
        assert!(page.has_more);
        let seq = Inner::cursor_seq(&ids[3]).unwrap();
        let page = inner.list(Cursor::After(seq), 10, now());
        assert_eq!(page.data.len(), 3);
        assert!(!page.has_more);
        let seq = Inner::cursor_seq(&ids[0]).unwrap();
        let page = inner.list(Cursor::Before(seq), 2, now());
        let got: Vec<_> = page.data.iter().map(|b| b.id.clone()).collect();
        assert_eq!(got, vec![ids[2].clone(), ids[1].clone()]);
        assert!(page.has_more);
        inner.reset();
        assert_eq!(inner.stats, SimStats::default());
        assert!(inner.list(Cursor::First, 20, now()).data.is_empty());
        let again = inner.create(prepared(&["x"]), &knobs(0), now(), Timestamp::now());
        assert!(!ids.contains(&again.id));
        assert_eq!(inner.stats.duplicate_submissions, 0);
    }
}
