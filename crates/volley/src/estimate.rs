//! What a run would cost: offline (no network call), or with every request's input tokens
//! counted by its provider's count-tokens endpoint (`volley estimate --exact-tokens`).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use volley_core::catalog::Catalog;
use volley_core::input::{InputOptions, InputRequest, InputSource};
use volley_core::plan_estimate::{Estimate, Estimator};
use volley_core::provider::{Providers, SubmissionItem};
use volley_core::retry::RetryPolicy;
use volley_types::{ErrorKind, ProviderKind};

use crate::{Error, ProviderSetup, RunSpec, Volley};

/// Asks the providers' count-tokens endpoints for the input tokens of requests: Anthropic
/// `POST /v1/messages/count_tokens`, OpenAI `POST /v1/responses/input_tokens` (the Responses
/// form of the same request), Gemini `models/{m}:countTokens`. Calls go through the same HTTP
/// client and retry policy as batches (429 and 5xx are retried), at most
/// [`TokenCounter::concurrency`] at once.
#[derive(Clone)]
pub struct TokenCounter {
    providers: Providers,
    concurrency: usize,
}

impl TokenCounter {
    /// Counting calls in flight at once, by default.
    pub const DEFAULT_CONCURRENCY: usize = 8;

    /// A counter for the providers of `setup` (keys and endpoints, e.g.
    /// [`ProviderSetup::from_env`] or [`ProviderSetup::simulator`]).
    pub fn new(setup: &ProviderSetup, retry: RetryPolicy) -> Self {
        Self::with_providers(setup.build(retry))
    }

    pub(crate) fn with_providers(providers: Providers) -> Self {
        Self {
            providers,
            concurrency: Self::DEFAULT_CONCURRENCY,
        }
    }

    /// At most `n` counting calls in flight (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
}

impl Volley {
    /// A [`TokenCounter`] for this volley's providers (the simulator's, with `simulate`).
    pub fn token_counter(&self) -> TokenCounter {
        TokenCounter::with_providers(self.providers.clone())
    }
}

/// Configures an estimate of a JSONL input; see [`estimate`].
pub struct EstimateBuilder<'c> {
    catalog: &'c Catalog,
    path: PathBuf,
    spec: RunSpec,
    max_batch_requests: Option<u64>,
    enqueued_token_budget: Option<u64>,
    counter: Option<TokenCounter>,
}

/// Starts an estimate of the JSONL file at `path`:
///
/// ```no_run
/// # async fn demo() -> Result<(), volley::Error> {
/// let volley = volley::Volley::builder().simulate(Default::default()).memory_store().build().await?;
/// let estimate = volley::estimate(volley.catalog(), "input.jsonl")
///     .exact_tokens(volley.token_counter())
///     .run()
///     .await?;
/// println!("{} input tokens", estimate.total.input_tokens);
/// # Ok(()) }
/// ```
pub fn estimate(catalog: &Catalog, path: impl Into<PathBuf>) -> EstimateBuilder<'_> {
    EstimateBuilder {
        catalog,
        path: path.into(),
        spec: RunSpec::default(),
        max_batch_requests: None,
        enqueued_token_budget: None,
        counter: None,
    }
}

impl EstimateBuilder<'_> {
    /// Defaults for lines that leave something out (model, `max_tokens`).
    pub fn spec(mut self, spec: RunSpec) -> Self {
        self.spec = spec;
        self
    }

    /// Lowers the per-batch request limit, as a run would.
    pub fn max_batch_requests(mut self, n: Option<u64>) -> Self {
        self.max_batch_requests = n;
        self
    }

    /// Packs under this enqueued-token budget for every model (default: the catalog's).
    pub fn enqueued_token_budget(mut self, tokens: Option<u64>) -> Self {
        self.enqueued_token_budget = tokens;
        self
    }

    /// Asks the providers for every request's input tokens instead of estimating them. A
    /// request that cannot be counted (no key, no endpoint, an error after retries) keeps its
    /// offline estimate, and the model's [`volley_core::plan_estimate::ModelEstimate`] says so
    /// (`counted_requests`, `count_error`). The worst case (what a cost cap reserves) is the
    /// same provable bound either way.
    pub fn exact_tokens(mut self, counter: TokenCounter) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Validates the input and computes the estimate (a problem in the input is an
    /// [`Error::Input`]). Calls the network only with [`EstimateBuilder::exact_tokens`].
    pub async fn run(self) -> Result<Estimate, Error> {
        match &self.counter {
            None => self.offline(),
            Some(counter) => {
                let mut estimator = self.estimator();
                let items = items(self.catalog, &self.path, &self.spec)?;
                let blocked = Blocked::default();
                let mut counted = futures::stream::iter(items)
                    .map(|item| {
                        let blocked = &blocked;
                        async move {
                            let item = item?;
                            let count = count(counter, self.catalog, &item, blocked).await;
                            Ok::<_, Error>((item, count))
                        }
                    })
                    .buffered(counter.concurrency);
                while let Some(next) = counted.next().await {
                    let (item, count) = next?;
                    let wire_bytes = wire_size(&item);
                    estimator.add_counted(&item, wire_bytes, count);
                }
                Ok(estimator.finish())
            }
        }
    }

    /// The offline estimate (no network call); [`EstimateBuilder::exact_tokens`] is ignored.
    pub fn offline(&self) -> Result<Estimate, Error> {
        let mut estimator = self.estimator();
        for item in items(self.catalog, &self.path, &self.spec)? {
            let item = item?;
            estimator.add(&item, wire_size(&item));
        }
        Ok(estimator.finish())
    }

    fn estimator(&self) -> Estimator<'_> {
        Estimator::new(self.catalog, self.max_batch_requests)
            .with_enqueued_token_budget(self.enqueued_token_budget)
    }
}

/// Validates `path`, then reads it again request by request (attached files loaded: their
/// size bounds the worst case, their content is counted).
fn items<'c>(
    catalog: &'c Catalog,
    path: &Path,
    spec: &RunSpec,
) -> Result<impl Iterator<Item = Result<InputRequest, Error>> + use<'c>, Error> {
    let source = InputSource::File(path.to_path_buf());
    crate::run::validate_input(catalog, &source, spec)?;
    let options = InputOptions {
        load_files: true,
        ids_validated: true,
        ..spec.input_options()
    };
    let one = |e| Error::Input {
        errors: vec![e],
        count: 1,
    };
    let reader = source.reader(catalog, options).map_err(one)?;
    Ok(reader.map(move |item| item.map_err(one)))
}

fn wire_size(item: &InputRequest) -> u64 {
    let submission = SubmissionItem {
        custom_id: item.custom_id.clone(),
        request: item.request.clone(),
    };
    volley_providers::wire_size(item.provider, &submission)
}

/// Provider and model pairs not asked again, with the reason: after an answer that will not
/// change from one request to the next (no key, no such endpoint or model, not allowed), the
/// rest of that model's requests keep their offline estimate without a call each.
#[derive(Default)]
struct Blocked(Mutex<HashMap<(ProviderKind, String), String>>);

impl Blocked {
    fn get(&self, key: &(ProviderKind, String)) -> Option<String> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn set(&self, key: (ProviderKind, String), reason: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.entry(key).or_insert_with(|| reason.to_owned());
        }
    }
}

/// The provider's count for `item`, or why there is none.
async fn count(
    counter: &TokenCounter,
    catalog: &Catalog,
    item: &InputRequest,
    blocked: &Blocked,
) -> Result<u64, String> {
    let key = (item.provider, item.request.model.clone());
    if let Some(reason) = blocked.get(&key) {
        return Err(reason);
    }
    let Some(provider) = counter.providers.get(item.provider) else {
        let keys = catalog.provider(item.provider).key_env.join(" or ");
        let reason = format!("no key for {} (set {keys})", item.provider);
        blocked.set(key, &reason);
        return Err(reason);
    };
    let provider: Arc<_> = provider.clone();
    match provider.count_input_tokens(&item.request).await {
        Ok(Some(tokens)) => Ok(tokens),
        Ok(None) => {
            let reason = format!("{} has no count-tokens endpoint", item.provider);
            blocked.set(key, &reason);
            Err(reason)
        }
        Err(e) => {
            let reason = e.to_string();
            if e.is_auth() || e.kind == ErrorKind::NotFound {
                blocked.set(key, &reason);
            }
            Err(reason)
        }
    }
}
