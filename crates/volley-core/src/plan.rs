//! The planner: packs pending requests of one provider and model into batches that respect the
//! provider's limits (requests and bytes per batch) and the enqueued-token budget (no batch
//! holds more estimated input tokens than may be enqueued for its model at once). It sees
//! requests one at a time, so memory does not grow with the input.
use crate::provider::BatchLimits;
use crate::store::PendingRequest;

/// Share of the byte limit the planner fills: the envelope and our size estimates are not exact.
const BYTE_HEADROOM: f64 = 0.95;

/// A batch the packer closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    /// First request's seq.
    pub first_seq: u64,
    /// Last request's seq.
    pub last_seq: u64,
    /// Requests in it.
    pub requests: u64,
    /// Bytes of its items.
    pub bytes: u64,
    /// Estimated input tokens of its items.
    pub tokens: u64,
}

/// Packs requests, in seq order, into batches.
#[derive(Debug, Clone)]
pub struct Packer {
    max_requests: u64,
    max_bytes: u64,
    max_tokens: u64,
    open: Option<Packed>,
}

/// Requests per batch unless the user says otherwise (the provider's own limit applies too).
///
/// volley holds a batch's requests in memory while it creates the batch and while it collects
/// its results, so this bounds memory whatever the input's size; smaller batches also come
/// back sooner and overlap their collection with other batches' processing. Providers take up
/// to 50,000–100,000; `--max-batch-requests` raises or lowers it (decision 0012).
pub const DEFAULT_MAX_BATCH_REQUESTS: u64 = 20_000;

impl Packer {
    /// A packer for these limits. `max_requests` may be lowered by the user, never raised.
    pub fn new(limits: BatchLimits, max_requests: Option<u64>) -> Self {
        Self {
            max_requests: max_requests
                .map_or(limits.max_requests, |m| m.min(limits.max_requests))
                .max(1),
            max_bytes: (limits.max_bytes as f64 * BYTE_HEADROOM) as u64,
            max_tokens: u64::MAX,
            open: None,
        }
    }

    /// Also closes a batch before its estimated input tokens would exceed `budget` (the
    /// enqueued-token budget of its model; `None` leaves batches unlimited in tokens).
    pub fn with_token_budget(mut self, budget: Option<u64>) -> Self {
        self.max_tokens = budget.unwrap_or(u64::MAX).max(1);
        self
    }

    /// Adds a request; returns the batch it closed, if adding it did not fit.
    ///
    /// A single request larger than the byte limit still gets a batch of its own: the provider's
    /// answer (413) then names the problem precisely. Likewise a single request above the token
    /// budget: the engine submits it alone, when nothing else of its model is enqueued.
    pub fn push(&mut self, request: PendingRequest) -> Option<Packed> {
        if let Some(open) = &mut self.open
            && open.requests < self.max_requests
            && open.bytes + request.wire_bytes <= self.max_bytes
            && open.tokens.saturating_add(request.est_input_tokens) <= self.max_tokens
        {
            open.last_seq = request.seq;
            open.requests += 1;
            open.bytes += request.wire_bytes;
            open.tokens += request.est_input_tokens;
            return None;
        }
        self.open.replace(Packed {
            first_seq: request.seq,
            last_seq: request.seq,
            requests: 1,
            bytes: request.wire_bytes,
            tokens: request.est_input_tokens,
        })
    }

    /// Closes the last batch.
    pub fn finish(self) -> Option<Packed> {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(seq: u64, wire_bytes: u64, est_input_tokens: u64) -> PendingRequest {
        PendingRequest {
            seq,
            wire_bytes,
            est_input_tokens,
            max_tokens: 1,
        }
    }

    fn pack(limits: BatchLimits, cap: Option<u64>, sizes: &[u64]) -> Vec<Packed> {
        pack_tokens(
            limits,
            cap,
            None,
            &sizes.iter().map(|s| (*s, 1)).collect::<Vec<_>>(),
        )
    }

    /// `items` are (wire bytes, estimated tokens).
    fn pack_tokens(
        limits: BatchLimits,
        cap: Option<u64>,
        budget: Option<u64>,
        items: &[(u64, u64)],
    ) -> Vec<Packed> {
        let mut packer = Packer::new(limits, cap).with_token_budget(budget);
        let mut out: Vec<Packed> = items
            .iter()
            .enumerate()
            .filter_map(|(i, (bytes, tokens))| packer.push(req(i as u64, *bytes, *tokens)))
            .collect();
        out.extend(packer.finish());
        out
    }

    #[test]
    fn splits_on_the_token_budget() {
        let limits = BatchLimits {
            max_requests: 100,
            max_bytes: 1_000_000,
        };
        let batches = pack_tokens(
            limits,
            None,
            Some(100),
            &[(1, 40), (1, 40), (1, 30), (1, 50)],
        );
        assert_eq!(
            batches
                .iter()
                .map(|b| (b.requests, b.tokens))
                .collect::<Vec<_>>(),
            [(2, 80), (2, 80)]
        );
        // A request above the budget alone: a batch of its own.
        let batches = pack_tokens(limits, None, Some(100), &[(1, 10), (1, 500), (1, 10)]);
        assert_eq!(
            batches.iter().map(|b| b.tokens).collect::<Vec<_>>(),
            [10, 500, 10]
        );
    }

    #[test]
    fn splits_on_request_count() {
        let limits = BatchLimits {
            max_requests: 2,
            max_bytes: 1_000,
        };
        let batches = pack(limits, None, &[1, 1, 1, 1, 1]);
        assert_eq!(
            batches.iter().map(|b| b.requests).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert_eq!((batches[1].first_seq, batches[1].last_seq), (2, 3));
    }

    #[test]
    fn user_cap_only_lowers() {
        let limits = BatchLimits {
            max_requests: 3,
            max_bytes: 1_000,
        };
        assert_eq!(pack(limits, Some(10), &[1; 6]).len(), 2);
        assert_eq!(pack(limits, Some(1), &[1; 6]).len(), 6);
    }

    #[test]
    fn oversize_request_gets_its_own_batch() {
        let limits = BatchLimits {
            max_requests: 10,
            max_bytes: 100,
        };
        let batches = pack(limits, None, &[10, 500, 10]);
        assert_eq!(
            batches.iter().map(|b| b.requests).collect::<Vec<_>>(),
            [1, 1, 1]
        );
    }

    proptest! {
        #[test]
        fn every_request_in_exactly_one_batch_within_limits(
            sizes in proptest::collection::vec(1u64..400, 0..300),
            max_requests in 1u64..50,
            max_bytes in 400u64..5_000,
        ) {
            let limits = BatchLimits { max_requests, max_bytes };
            let batches = pack(limits, None, &sizes);
            let mut next = 0;
            for b in &batches {
                prop_assert_eq!(b.first_seq, next);
                prop_assert_eq!(b.last_seq - b.first_seq + 1, b.requests);
                prop_assert!(b.requests <= max_requests);
                prop_assert!(b.requests == 1 || b.bytes <= max_bytes);
                next = b.last_seq + 1;
            }
            prop_assert_eq!(next, sizes.len() as u64);
        }

        #[test]
        fn no_batch_exceeds_the_token_budget_and_batches_are_full(
            tokens in proptest::collection::vec(1u64..2_000, 0..300),
            budget in 1u64..20_000,
        ) {
            let limits = BatchLimits { max_requests: 1_000_000, max_bytes: u64::MAX / 2 };
            let items: Vec<(u64, u64)> = tokens.iter().map(|t| (1, *t)).collect();
            let batches = pack_tokens(limits, None, Some(budget), &items);
            let mut next = 0;
            for (i, b) in batches.iter().enumerate() {
                prop_assert_eq!(b.first_seq, next);
                let sum: u64 = tokens[b.first_seq as usize..=b.last_seq as usize].iter().sum();
                prop_assert_eq!(sum, b.tokens);
                prop_assert!(b.requests == 1 || b.tokens <= budget, "{:?}", b);
                // Greedy: a batch closed only because the next request did not fit.
                if let Some(following) = tokens.get(b.last_seq as usize + 1) {
                    prop_assert!(b.tokens + following > budget, "batch {} closed early", i);
                }
                next = b.last_seq + 1;
            }
            prop_assert_eq!(next, tokens.len() as u64);
        }
    }
}
