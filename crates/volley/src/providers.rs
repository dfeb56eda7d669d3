//! Which providers a run may use, and where they are: from the environment (the same
//! variables the official SDKs read) or the embedded simulator.
use std::sync::Arc;

use secrecy::SecretString;
use volley_core::catalog::Catalog;
use volley_core::provider::Providers;
use volley_core::retry::RetryPolicy;
use volley_providers::{AnthropicProvider, Endpoint, GeminiProvider, HttpClient, OpenAiProvider};
use volley_types::ProviderKind;

/// The key volley sends to the simulator; the simulator accepts any key.
const SIMULATOR_KEY: &str = "volley-simulator";

/// Where each provider is and with which key.
#[derive(Debug, Clone, Default)]
pub struct ProviderSetup {
    endpoints: Vec<(ProviderKind, Endpoint)>,
}

impl ProviderSetup {
    /// Reads keys and endpoints from the environment (`ANTHROPIC_API_KEY`,
    /// `ANTHROPIC_BASE_URL`, …); a provider without a key is left out.
    pub fn from_env(catalog: &Catalog) -> Self {
        Self::from_lookup(catalog, |name| std::env::var(name).ok())
    }

    /// Like [`ProviderSetup::from_env`] with a custom variable lookup (for tests).
    pub fn from_lookup(catalog: &Catalog, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut endpoints = Vec::new();
        for kind in ProviderKind::ALL {
            let settings = catalog.provider(kind);
            let key = settings
                .key_env
                .iter()
                .find_map(|name| lookup(name).filter(|v| !v.trim().is_empty()));
            let Some(key) = key else { continue };
            let base = lookup(&settings.base_url_env)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| settings.default_base_url.clone());
            endpoints.push((kind, Endpoint::new(base, SecretString::from(key))));
        }
        Self { endpoints }
    }

    /// Every provider pointed at a simulator at `base_url` (`http://127.0.0.1:PORT`).
    pub fn simulator(base_url: &str) -> Self {
        let endpoints = ProviderKind::ALL
            .into_iter()
            .map(|kind| {
                let base = match kind {
                    ProviderKind::OpenAi => format!("{base_url}/v1"),
                    _ => base_url.to_owned(),
                };
                (kind, Endpoint::new(base, SecretString::from(SIMULATOR_KEY)))
            })
            .collect();
        Self { endpoints }
    }

    /// Sets one provider's endpoint.
    pub fn with(mut self, kind: ProviderKind, endpoint: Endpoint) -> Self {
        self.endpoints.retain(|(k, _)| *k != kind);
        self.endpoints.push((kind, endpoint));
        self
    }

    /// Providers that have an endpoint and are implemented.
    pub(crate) fn build(&self, retry: RetryPolicy) -> Providers {
        let http = HttpClient::new(retry);
        let mut providers = Providers::default();
        for (kind, endpoint) in &self.endpoints {
            let (endpoint, http) = (endpoint.clone(), http.clone());
            match kind {
                ProviderKind::Anthropic => {
                    providers.insert(Arc::new(AnthropicProvider::new(endpoint, http)));
                }
                ProviderKind::OpenAi => {
                    providers.insert(Arc::new(OpenAiProvider::new(endpoint, http)));
                }
                ProviderKind::Gemini => {
                    providers.insert(Arc::new(GeminiProvider::new(endpoint, http)));
                }
            }
        }
        providers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(setup: &ProviderSetup, kind: ProviderKind) -> Option<&Endpoint> {
        setup
            .endpoints
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, e)| e)
    }

    #[test]
    fn keys_and_endpoints_come_from_the_sdk_variables() {
        let catalog = Catalog::builtin();
        let setup = ProviderSetup::from_lookup(&catalog, |name| match name {
            "ANTHROPIC_API_KEY" => Some("a".into()),
            "GOOGLE_API_KEY" => Some("g".into()),
            "GOOGLE_GEMINI_BASE_URL" => Some("http://127.0.0.1:9/".into()),
            _ => None,
        });
        assert_eq!(
            endpoint(&setup, ProviderKind::Anthropic).unwrap().base_url,
            "https://api.anthropic.com"
        );
        assert!(
            endpoint(&setup, ProviderKind::OpenAi).is_none(),
            "no key, no provider"
        );
        assert_eq!(
            endpoint(&setup, ProviderKind::Gemini).unwrap().base_url,
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn an_openai_profile_brings_its_url_and_key_variable() {
        let mut catalog = Catalog::builtin();
        catalog.apply_openai_profile(&volley_core::catalog::profiles()["groq"]);
        let setup = ProviderSetup::from_lookup(&catalog, |name| {
            (name == "GROQ_API_KEY").then(|| "gsk".to_owned())
        });
        assert_eq!(
            endpoint(&setup, ProviderKind::OpenAi).unwrap().base_url,
            "https://api.groq.com/openai/v1"
        );
    }
}
