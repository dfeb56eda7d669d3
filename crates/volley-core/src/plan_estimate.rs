//! `volley estimate` and `volley run --dry-run`: what a run would cost and how it would be
//! batched, computed from the input alone (no network call), or with input tokens counted by
//! the providers' count-tokens endpoints (`--exact-tokens`, see [`Estimator::add_counted`]).
use std::collections::BTreeMap;

use serde::Serialize;
use volley_types::{Mode, ProviderKind, Usage};

use crate::catalog::Catalog;
use crate::estimate;
use crate::input::InputRequest;
use crate::plan::Packer;
use crate::provider::BatchLimits;
use crate::store::PendingRequest;

/// The estimate for one provider and model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEstimate {
    /// Provider.
    pub provider: ProviderKind,
    /// Model id.
    pub model: String,
    /// Requests.
    pub requests: u64,
    /// Input tokens: counted by the provider for [`ModelEstimate::counted_requests`] requests,
    /// estimated offline for the others.
    pub input_tokens: u64,
    /// Requests whose input tokens the provider counted (`--exact-tokens`).
    pub counted_requests: u64,
    /// Whether every request's input tokens were counted by the provider.
    pub input_tokens_exact: bool,
    /// Why some requests could not be counted (the first reason), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_error: Option<String>,
    /// Output tokens if every request used its `max_tokens`.
    pub output_tokens_max: u64,
    /// Provider batches the planner would make.
    pub batches: u64,
    /// Estimated input + maximal output, at batch prices.
    pub cost_batch_usd: f64,
    /// The same at real-time prices.
    pub cost_realtime_usd: f64,
    /// The amount a cost cap reserves: an upper bound on input + maximal output, at batch prices.
    pub worst_case_usd: f64,
    /// Whether the catalog has prices for the model.
    pub priced: bool,
    /// How long the provider takes.
    pub expected_wait: &'static str,
    /// Input tokens that may be enqueued for this model at once (catalog or user), if limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueued_token_budget: Option<u64>,
    /// With a budget: the fewest rounds of provider processing the input needs
    /// (input tokens / budget, rounded up); the run takes at least that many batch durations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_rounds: Option<u64>,
}

/// The estimate of a whole input.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Requests.
    pub requests: u64,
    /// Whether input tokens were asked of the providers' count-tokens endpoints.
    pub exact_tokens: bool,
    /// Per provider and model.
    pub models: Vec<ModelEstimate>,
    /// Totals (provider and model fields empty).
    pub total: Totals,
}

/// Totals of an estimate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Requests.
    pub requests: u64,
    /// Input tokens (counted or estimated).
    pub input_tokens: u64,
    /// Requests whose input tokens the provider counted.
    pub counted_requests: u64,
    /// Maximal output tokens.
    pub output_tokens_max: u64,
    /// Provider batches.
    pub batches: u64,
    /// At batch prices.
    pub cost_batch_usd: f64,
    /// At real-time prices.
    pub cost_realtime_usd: f64,
    /// Worst case at batch prices.
    pub worst_case_usd: f64,
}

struct Group {
    estimate: ModelEstimate,
    packer: Packer,
}

/// Accumulates requests into an [`Estimate`]; memory grows with the number of models only.
pub struct Estimator<'c> {
    catalog: &'c Catalog,
    max_batch_requests: Option<u64>,
    enqueued_token_budget: Option<u64>,
    groups: BTreeMap<(ProviderKind, String), Group>,
    seq: u64,
    exact_tokens: bool,
}

impl<'c> Estimator<'c> {
    /// An empty estimate; `max_batch_requests` as the engine's (`None`: the default,
    /// [`crate::plan::DEFAULT_MAX_BATCH_REQUESTS`]), so the batches counted are the ones a run
    /// makes.
    pub fn new(catalog: &'c Catalog, max_batch_requests: Option<u64>) -> Self {
        Self {
            catalog,
            max_batch_requests: max_batch_requests
                .or(Some(crate::plan::DEFAULT_MAX_BATCH_REQUESTS)),
            enqueued_token_budget: None,
            groups: BTreeMap::new(),
            seq: 0,
            exact_tokens: false,
        }
    }

    /// Packs under this enqueued-token budget for every model, as `--enqueued-token-budget`
    /// does (default: the catalog's per-model budgets).
    pub fn with_enqueued_token_budget(mut self, budget: Option<u64>) -> Self {
        self.enqueued_token_budget = budget;
        self
    }

    /// Adds one validated request; `wire_bytes` is its size in the provider's batch body. Its
    /// input tokens are estimated offline ([`Catalog::input_tokens`]).
    pub fn add(&mut self, item: &InputRequest, wire_bytes: u64) {
        self.add_request(item, wire_bytes, None);
    }

    /// Adds one validated request whose input tokens were asked of the provider's count-tokens
    /// endpoint: `Ok(tokens)` is the provider's count, `Err(reason)` falls back to the offline
    /// estimate and is reported ([`ModelEstimate::count_error`]). The worst case stays the
    /// cost-cap bound either way: a count is not a bound.
    pub fn add_counted(
        &mut self,
        item: &InputRequest,
        wire_bytes: u64,
        count: Result<u64, String>,
    ) {
        self.exact_tokens = true;
        self.add_request(item, wire_bytes, Some(count));
    }

    fn add_request(
        &mut self,
        item: &InputRequest,
        wire_bytes: u64,
        count: Option<Result<u64, String>>,
    ) {
        let request = &item.request;
        let key = (item.provider, request.model.clone());
        let catalog = self.catalog;
        let max_batch_requests = self.max_batch_requests;
        let budget = catalog.enqueued_token_budget(
            item.provider,
            &request.model,
            self.enqueued_token_budget,
        );
        let group = self.groups.entry(key).or_insert_with(|| {
            let settings = catalog.provider(item.provider);
            Group {
                estimate: ModelEstimate {
                    provider: item.provider,
                    model: request.model.clone(),
                    requests: 0,
                    input_tokens: 0,
                    counted_requests: 0,
                    input_tokens_exact: false,
                    count_error: None,
                    output_tokens_max: 0,
                    batches: 0,
                    cost_batch_usd: 0.0,
                    cost_realtime_usd: 0.0,
                    worst_case_usd: 0.0,
                    priced: catalog
                        .model(&request.model)
                        .is_some_and(|m| m.provider == item.provider),
                    expected_wait: expected_wait(item.provider),
                    enqueued_token_budget: budget,
                    budget_rounds: None,
                },
                packer: Packer::new(
                    BatchLimits {
                        max_requests: settings.max_requests_per_batch,
                        max_bytes: settings.max_bytes_per_batch,
                    },
                    max_batch_requests,
                )
                .with_token_budget(budget),
            }
        });
        let e = &mut group.estimate;
        let input = match count {
            Some(Ok(tokens)) => {
                e.counted_requests += 1;
                tokens
            }
            Some(Err(reason)) => {
                e.count_error.get_or_insert(reason);
                catalog.input_tokens(item.provider, request)
            }
            None => catalog.input_tokens(item.provider, request),
        };
        let output = u64::from(request.max_tokens);
        e.requests += 1;
        e.input_tokens += input;
        e.output_tokens_max += output;
        let usage = |input_tokens| Usage {
            input_tokens,
            output_tokens: output,
            ..Usage::default()
        };
        e.cost_batch_usd += catalog.cost(item.provider, &request.model, &usage(input), Mode::Batch);
        e.cost_realtime_usd +=
            catalog.cost(item.provider, &request.model, &usage(input), Mode::Realtime);
        e.worst_case_usd += worst_case_cost(catalog, item.provider, request);
        if group
            .packer
            .push(PendingRequest {
                seq: self.seq,
                wire_bytes,
                est_input_tokens: input,
                max_tokens: output,
            })
            .is_some()
        {
            e.batches += 1;
        }
        self.seq += 1;
    }

    /// The finished estimate.
    pub fn finish(self) -> Estimate {
        let mut total = Totals::default();
        let models: Vec<ModelEstimate> = self
            .groups
            .into_values()
            .map(|group| {
                let mut e = group.estimate;
                e.batches += u64::from(group.packer.finish().is_some());
                e.input_tokens_exact = e.requests > 0 && e.counted_requests == e.requests;
                e.budget_rounds = e
                    .enqueued_token_budget
                    .map(|budget| e.input_tokens.div_ceil(budget.max(1)));
                total.requests += e.requests;
                total.input_tokens += e.input_tokens;
                total.counted_requests += e.counted_requests;
                total.output_tokens_max += e.output_tokens_max;
                total.batches += e.batches;
                total.cost_batch_usd += e.cost_batch_usd;
                total.cost_realtime_usd += e.cost_realtime_usd;
                total.worst_case_usd += e.worst_case_usd;
                e
            })
            .collect();
        Estimate {
            requests: total.requests,
            exact_tokens: self.exact_tokens,
            models,
            total,
        }
    }
}

/// The most a request can cost in batch mode: the input bound plus `max_tokens` output.
pub fn worst_case_cost(
    catalog: &Catalog,
    provider: ProviderKind,
    request: &volley_types::Request,
) -> f64 {
    let usage = Usage {
        input_tokens: estimate::input_tokens_bound(request),
        output_tokens: u64::from(request.max_tokens),
        ..Usage::default()
    };
    catalog.cost(provider, &request.model, &usage, Mode::Batch)
}

fn expected_wait(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Anthropic => "most batches within 1 h; at most 24 h",
        ProviderKind::OpenAi => "within the 24 h completion window",
        ProviderKind::Gemini => "target 24 h; expires after 48 h",
    }
}
