use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The batch providers volley speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Anthropic Message Batches.
    Anthropic,
    /// OpenAI Files + Batches.
    #[serde(rename = "openai")]
    OpenAi,
    /// Gemini `batchGenerateContent`.
    Gemini,
}

impl ProviderKind {
    /// Every provider, in a stable order.
    pub const ALL: [ProviderKind; 3] = [Self::Anthropic, Self::OpenAi, Self::Gemini];

    /// The lowercase name used in input (`openai/my-model`), output and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::Gemini => "gemini",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "anthropic" | "claude" => Ok(Self::Anthropic),
            "openai" => Ok(Self::OpenAi),
            "gemini" | "google" => Ok(Self::Gemini),
            other => Err(format!(
                "unknown provider `{other}` (expected anthropic, openai or gemini)"
            )),
        }
    }
}
