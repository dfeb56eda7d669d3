//! The model catalog (`catalog/models.toml`): which provider serves a model, its prices, and
//! each provider's batch limits. Users extend or override it with their own TOML file.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use volley_types::{Mode, ProviderKind, Usage};

/// The catalog shipped with volley.
pub const BUILTIN: &str = include_str!("../../../catalog/models.toml");

/// Named profiles of OpenAI-compatible batch servers shipped with volley.
pub const PROFILES: &str = include_str!("../../../catalog/profiles.toml");

/// An OpenAI-compatible batch server (`catalog/profiles.toml`), driven by the OpenAI adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Base URL, with the version segment (as `OPENAI_BASE_URL`).
    pub base_url: String,
    /// Environment variable holding the key.
    pub key_env: String,
    /// Largest batch input, when the provider states it.
    #[serde(default)]
    pub max_bytes_per_batch: Option<u64>,
    /// Most requests per batch, when the provider states it.
    #[serde(default)]
    pub max_requests_per_batch: Option<u64>,
    /// Where the facts come from.
    pub source: String,
    /// Other pages read.
    #[serde(default)]
    pub also_read: Vec<String>,
    /// When the sources were read.
    pub checked: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    profiles: BTreeMap<String, Profile>,
}

/// The shipped profiles, by name.
pub fn profiles() -> BTreeMap<String, Profile> {
    toml::from_str::<ProfilesFile>(PROFILES)
        .expect("the shipped profiles parse (tested)")
        .profiles
}

/// Per-provider settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// Multiplier on list prices in batch mode (0.5 everywhere today).
    pub batch_discount: f64,
    /// Whether the batch discount also applies to cache reads and writes.
    pub batch_discount_applies_to_cache: bool,
    /// Most requests one provider batch may hold.
    pub max_requests_per_batch: u64,
    /// Largest provider batch body, in bytes.
    pub max_bytes_per_batch: u64,
    /// Environment variables holding the key, first found wins.
    pub key_env: Vec<String>,
    /// Environment variable that overrides the endpoint.
    pub base_url_env: String,
    /// The provider's public endpoint.
    pub default_base_url: String,
    /// Multiplier from an o200k_base token count to this provider's tokens, for estimates
    /// (1.0 for OpenAI, whose tokenizer it is). See `estimate` and docs/cost.md.
    #[serde(default = "one")]
    pub token_factor: f64,
}

fn one() -> f64 {
    1.0
}

/// One model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The provider's model id.
    pub id: String,
    /// Who serves it.
    pub provider: ProviderKind,
    /// Other names accepted for it (dated snapshots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// List price, USD per million uncached input tokens.
    pub input: f64,
    /// List price, USD per million output tokens.
    pub output: f64,
    /// List price, USD per million cache-read tokens.
    pub cache_read: f64,
    /// List price, USD per million cache-write tokens.
    pub cache_write: f64,
    /// Context window, tokens.
    pub context_window: u64,
    /// Most output tokens per request.
    pub max_output: u32,
    /// Most input tokens the provider lets be enqueued for this model across active batches
    /// (Gemini's tier limits, OpenAI's per-model queue limits). Unset: no limit known; the
    /// user can still set one (`--enqueued-token-budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    providers: BTreeMap<ProviderKind, ProviderEntry>,
    #[serde(default)]
    models: Vec<ModelEntry>,
}

/// A model reference resolved against the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<'a> {
    /// The provider that will run it.
    pub provider: ProviderKind,
    /// The model id to send.
    pub model: String,
    /// The catalog entry, when the model is known (a forced `provider/model` may not be).
    pub entry: Option<&'a ModelEntry>,
}

/// Why a model name did not resolve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    /// Not in the catalog and not forced with `provider/model`.
    #[error("unknown model `{name}`{}", suggestion_text(.suggestion.as_deref()))]
    Unknown {
        /// What the user wrote.
        name: String,
        /// The closest known model.
        suggestion: Option<String>,
    },
    /// `x/model` where `x` is not a provider.
    #[error("{0}")]
    BadProvider(String),
}

fn suggestion_text(s: Option<&str>) -> String {
    s.map(|s| {
        format!("; did you mean `{s}`? (`volley models` lists them; `provider/model` forces one)")
    })
    .unwrap_or_else(|| {
        "; `volley models` lists known models, `provider/model` forces one".to_owned()
    })
}

/// The loaded catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    providers: BTreeMap<ProviderKind, ProviderEntry>,
    models: Vec<ModelEntry>,
}

/// A catalog file that did not parse.
#[derive(Debug, thiserror::Error)]
#[error("catalog {origin}: {message}")]
pub struct CatalogError {
    origin: String,
    message: String,
}

impl Catalog {
    /// The catalog shipped with volley.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN, "builtin").expect("the builtin catalog parses (tested)")
    }

    /// Parses a catalog file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| CatalogError {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            providers: file.providers,
            models: file.models,
        })
    }

    /// Adds or replaces the models and providers of `other` (a user's file) on top of this one.
    pub fn overlay(&mut self, other: Catalog) {
        self.providers.extend(other.providers);
        for model in other.models {
            self.models.retain(|m| m.id != model.id);
            self.models.push(model);
        }
    }

    /// Every model, in file order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// Applies an OpenAI-compatible profile: its stated limits replace OpenAI's.
    pub fn apply_openai_profile(&mut self, profile: &Profile) {
        if let Some(entry) = self.providers.get_mut(&ProviderKind::OpenAi) {
            if let Some(bytes) = profile.max_bytes_per_batch {
                entry.max_bytes_per_batch = bytes;
            }
            if let Some(requests) = profile.max_requests_per_batch {
                entry.max_requests_per_batch = requests;
            }
            entry.key_env = vec![profile.key_env.clone()];
            entry.default_base_url = profile.base_url.clone();
        }
    }

    /// Settings of a provider.
    pub fn provider(&self, kind: ProviderKind) -> &ProviderEntry {
        self.providers
            .get(&kind)
            .unwrap_or_else(|| panic!("the catalog has no [providers.{kind}] table"))
    }

    /// The enqueued-token budget of `model` at `provider`: `user` if given (it applies to
    /// every provider and model), else the catalog's `enqueued_tokens`, else none.
    pub fn enqueued_token_budget(
        &self,
        provider: ProviderKind,
        model: &str,
        user: Option<u64>,
    ) -> Option<u64> {
        user.or_else(|| {
            self.model(model)
                .filter(|m| m.provider == provider)
                .and_then(|m| m.enqueued_tokens)
        })
    }

    /// Estimated input tokens of `request` at `provider`, with the provider's `token_factor`.
    pub fn input_tokens(&self, provider: ProviderKind, request: &volley_types::Request) -> u64 {
        let factor = self
            .providers
            .get(&provider)
            .map_or(1.0, |p| p.token_factor);
        crate::estimate::input_tokens_with_factor(provider, request, factor)
    }

    /// Looks a model up by id or alias.
    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models
            .iter()
            .find(|m| m.id == name || m.aliases.iter().any(|a| a == name))
    }

    /// Resolves what the user wrote: a known model id or alias, or `provider/model`.
    pub fn resolve(&self, name: &str) -> Result<Resolved<'_>, ResolveError> {
        if let Some(entry) = self.model(name) {
            return Ok(Resolved {
                provider: entry.provider,
                model: entry.id.clone(),
                entry: Some(entry),
            });
        }
        if let Some((prefix, model)) = name.split_once('/') {
            let provider: ProviderKind = prefix.parse().map_err(ResolveError::BadProvider)?;
            if model.is_empty() {
                return Err(ResolveError::BadProvider(format!(
                    "`{name}` names no model after the provider"
                )));
            }
            let entry = self.model(model).filter(|e| e.provider == provider);
            return Ok(Resolved {
                provider,
                model: entry.map_or_else(|| model.to_owned(), |e| e.id.clone()),
                entry,
            });
        }
        Err(ResolveError::Unknown {
            name: name.to_owned(),
            suggestion: self.closest(name),
        })
    }

    fn closest(&self, name: &str) -> Option<String> {
        let names = self
            .models
            .iter()
            .flat_map(|m| std::iter::once(&m.id).chain(&m.aliases));
        names
            .map(|candidate| (edit_distance(name, candidate), candidate))
            .filter(|(d, c)| *d <= c.len().max(name.len()) / 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, c)| c.clone())
    }

    /// USD cost of `usage` on `model` in `mode`. Unknown models cost 0 (they are reported as
    /// unpriced by `volley estimate`).
    pub fn cost(&self, provider: ProviderKind, model: &str, usage: &Usage, mode: Mode) -> f64 {
        let Some(entry) = self.model(model).filter(|e| e.provider == provider) else {
            return 0.0;
        };
        let settings = self.provider(provider);
        let (discount, cache_discount) = match mode {
            Mode::Batch if settings.batch_discount_applies_to_cache => {
                (settings.batch_discount, settings.batch_discount)
            }
            Mode::Batch => (settings.batch_discount, 1.0),
            Mode::Realtime => (1.0, 1.0),
        };
        let per_token = |price: f64| price / 1_000_000.0;
        (usage.input_tokens as f64 * per_token(entry.input)
            + usage.output_tokens as f64 * per_token(entry.output))
            * discount
            + (usage.cache_read_tokens as f64 * per_token(entry.cache_read)
                + usage.cache_write_tokens as f64 * per_token(entry.cache_write))
                * cache_discount
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_covers_every_provider() {
        let catalog = Catalog::builtin();
        for kind in ProviderKind::ALL {
            assert!(catalog.models().iter().any(|m| m.provider == kind));
            assert!(catalog.provider(kind).max_requests_per_batch > 0);
        }
    }

    #[test]
    fn shipped_profiles_parse_and_apply_their_limits() {
        let profiles = profiles();
        let groq = &profiles["groq"];
        assert!(groq.base_url.ends_with("/v1") && groq.key_env == "GROQ_API_KEY");
        let mut catalog = Catalog::builtin();
        catalog.apply_openai_profile(groq);
        let openai = catalog.provider(ProviderKind::OpenAi);
        assert_eq!(openai.max_bytes_per_batch, 100_000_000);
        assert_eq!(openai.key_env, ["GROQ_API_KEY"]);
        assert_eq!(openai.default_base_url, groq.base_url);
    }

    #[test]
    fn enqueued_budgets_come_from_the_catalog_unless_the_user_sets_one() {
        let catalog = Catalog::builtin();
        let flash = catalog.enqueued_token_budget(ProviderKind::Gemini, "gemini-2.5-flash", None);
        assert_eq!(flash, Some(3_000_000));
        assert_eq!(
            catalog.enqueued_token_budget(ProviderKind::Anthropic, "claude-haiku-4-5", None),
            None
        );
        assert_eq!(
            catalog.enqueued_token_budget(ProviderKind::Gemini, "gemini-2.5-flash", Some(7)),
            Some(7)
        );
        assert!(catalog.provider(ProviderKind::OpenAi).token_factor == 1.0);
    }

    #[test]
    fn resolves_ids_aliases_and_forced_providers() {
        let catalog = Catalog::builtin();
        let r = catalog.resolve("claude-haiku-4-5-20251001").unwrap();
        assert_eq!(
            (r.provider, r.model.as_str()),
            (ProviderKind::Anthropic, "claude-haiku-4-5")
        );
        let r = catalog.resolve("openai/my-finetune").unwrap();
        assert_eq!(
            (r.provider, r.model.as_str(), r.entry),
            (ProviderKind::OpenAi, "my-finetune", None)
        );
        assert!(matches!(
            catalog.resolve("nope/x"),
            Err(ResolveError::BadProvider(_))
        ));
    }

    #[test]
    fn unknown_model_suggests_the_closest() {
        let err = Catalog::builtin().resolve("claude-haiku-45").unwrap_err();
        assert_eq!(
            err,
            ResolveError::Unknown {
                name: "claude-haiku-45".into(),
                suggestion: Some("claude-haiku-4-5".into())
            }
        );
        assert!(err.to_string().contains("did you mean `claude-haiku-4-5`"));
    }

    #[test]
    fn batch_cost_is_half_of_list_and_cache_follows_the_provider_rule() {
        let catalog = Catalog::builtin();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_tokens: 1_000_000,
            cache_write_tokens: 0,
        };
        let haiku = catalog.cost(
            ProviderKind::Anthropic,
            "claude-haiku-4-5",
            &usage,
            Mode::Batch,
        );
        assert!((haiku - (0.5 + 2.5 + 0.05)).abs() < 1e-9, "{haiku}");
        let realtime = catalog.cost(
            ProviderKind::Anthropic,
            "claude-haiku-4-5",
            &usage,
            Mode::Realtime,
        );
        assert!((realtime - 6.1).abs() < 1e-9, "{realtime}");
        let flash = catalog.cost(
            ProviderKind::Gemini,
            "gemini-2.5-flash",
            &usage,
            Mode::Batch,
        );
        assert!((flash - (0.15 + 1.25 + 0.03)).abs() < 1e-9, "{flash}");
    }
}
