//! Configuring a [`crate::Volley`]: store, providers or simulator, catalog, engine settings.
use std::path::PathBuf;
use std::sync::Arc;

use volley_core::catalog::Catalog;
use volley_core::engine::{Engine, EngineConfig};
use volley_core::events::{Event, EventSink};
use volley_core::poll::PollPolicy;
use volley_core::retry::RetryPolicy;
use volley_core::store::Store;
use volley_sim::{SimConfig, Simulator};
use volley_store::SqliteStore;

use crate::{Error, ProviderSetup, Volley};

/// The store used when none is given: a SQLite file in the current folder.
pub const DEFAULT_STORE: &str = "sqlite://.volley/volley.db";

/// Configures a [`Volley`].
#[derive(Default)]
pub struct VolleyBuilder {
    store: Option<String>,
    store_instance: Option<Arc<dyn Store>>,
    simulate: Option<SimConfig>,
    providers: Option<ProviderSetup>,
    catalog_file: Option<PathBuf>,
    openai_profile: Option<String>,
    engine: EngineConfig,
    poll_set: bool,
    retry: Option<RetryPolicy>,
    events: Option<EventSink>,
}

impl VolleyBuilder {
    /// The store: `sqlite://path`, a plain path, or `sqlite::memory:`. Default:
    /// [`DEFAULT_STORE`].
    pub fn store(mut self, location: impl Into<String>) -> Self {
        self.store = Some(location.into());
        self
    }

    /// A store opened by the caller (another [`Store`] implementation, or one wrapped for
    /// tests); it takes precedence over [`VolleyBuilder::store`].
    pub fn store_instance(mut self, store: Arc<dyn Store>) -> Self {
        self.store_instance = Some(store);
        self
    }

    /// An in-memory store (state is lost when the process ends; for tests and demos).
    pub fn memory_store(self) -> Self {
        self.store("sqlite::memory:")
    }

    /// Starts the embedded simulator and points every provider at it; no keys needed.
    pub fn simulate(mut self, config: SimConfig) -> Self {
        self.simulate = Some(config);
        self
    }

    /// Provider endpoints and keys (default: from the environment).
    pub fn providers(mut self, setup: ProviderSetup) -> Self {
        self.providers = Some(setup);
        self
    }

    /// A TOML catalog that adds or overrides models (same format as `catalog/models.toml`).
    pub fn catalog_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.catalog_file = Some(path.into());
        self
    }

    /// Sends OpenAI-model requests to a named OpenAI-compatible batch server
    /// (`catalog/profiles.toml`: its base URL, key variable and limits).
    pub fn openai_profile(mut self, name: impl Into<String>) -> Self {
        self.openai_profile = Some(name.into());
        self
    }

    /// Lowers the providers' per-batch request limit.
    pub fn max_batch_requests(mut self, n: u64) -> Self {
        self.engine.max_batch_requests = Some(n);
        self
    }

    /// Input tokens that may be enqueued at once per provider and model (every model; it
    /// overrides the catalog's per-model `enqueued_tokens`). Batches are packed under it and
    /// submitted only when they fit next to that model's batches already at the provider.
    pub fn enqueued_token_budget(mut self, tokens: u64) -> Self {
        self.engine.enqueued_token_budget = Some(tokens.max(1));
        self
    }

    /// Most batches at a provider at once (default 16).
    pub fn max_concurrent_batches(mut self, n: usize) -> Self {
        self.engine.max_open_batches_per_provider = n.max(1);
        self
    }

    /// How long a create that cannot be found at the provider after a crash is still taken
    /// to be on its way (default 60 s; [`EngineConfig::create_grace`]).
    pub fn create_grace(mut self, grace: std::time::Duration) -> Self {
        self.engine.create_grace = grace;
        self
    }

    /// Poll interval bounds.
    pub fn poll_policy(mut self, poll: PollPolicy) -> Self {
        self.engine.poll = poll;
        self.poll_set = true;
        self
    }

    /// Retry policy for HTTP calls.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// All engine settings at once.
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self.poll_set = true;
        self
    }

    /// Receives progress events (must not block).
    pub fn on_event(mut self, sink: impl Fn(Event) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    /// Opens the store, starts the simulator if asked, and wires the engine.
    pub async fn build(mut self) -> Result<Volley, Error> {
        let mut catalog = Catalog::builtin();
        if let Some(path) = &self.catalog_file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let extra = Catalog::parse(&text, &path.display().to_string())
                .map_err(|e| Error::Config(e.to_string()))?;
            catalog.overlay(extra);
        }
        if let Some(name) = &self.openai_profile {
            let profiles = volley_core::catalog::profiles();
            let profile = profiles.get(name).ok_or_else(|| {
                Error::Config(format!(
                    "unknown OpenAI-compatible profile `{name}`; known: {}",
                    profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            catalog.apply_openai_profile(profile);
        }
        let (location, store): (String, Arc<dyn Store>) = match self.store_instance {
            Some(store) => ("(given by the caller)".to_owned(), store),
            None => {
                let location = self.store.unwrap_or_else(|| DEFAULT_STORE.to_owned());
                let store = Arc::new(SqliteStore::open(&location).await?);
                (location, store)
            }
        };

        let simulator = match self.simulate {
            Some(config) => Some(Simulator::spawn(config).await.map_err(|source| Error::Io {
                path: "simulator".into(),
                source,
            })?),
            None => None,
        };
        let setup = match (&simulator, self.providers) {
            (Some(sim), _) => {
                if !self.poll_set {
                    self.engine.poll = PollPolicy::SIMULATOR;
                }
                ProviderSetup::simulator(&sim.base_url())
            }
            (None, Some(setup)) => setup,
            (None, None) => ProviderSetup::from_env(&catalog),
        };
        let providers = setup.build(self.retry.unwrap_or_default());
        let catalog = Arc::new(catalog);
        let engine = Engine::new(
            store.clone(),
            providers.clone(),
            catalog.clone(),
            self.engine,
            self.events,
        );
        Ok(Volley {
            store,
            store_location: location,
            catalog,
            providers,
            engine,
            simulator,
        })
    }
}
