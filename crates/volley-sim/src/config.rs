//! Simulator knobs and their JSON form (for `POST /_sim/config`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Behaviour knobs of the simulator. Change them at runtime with [`crate::Simulator::set_config`]
/// or `POST /_sim/config`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Time from batch create to its end (default 2 s). OpenAI batches spend the first tenth
    /// `validating` and the last tenth `finalizing`; Gemini batches the first tenth
    /// `BATCH_STATE_PENDING`.
    pub processing: Duration,
    /// Fraction of batch requests that fail with a transient server error (Anthropic `errored`
    /// `api_error`, an OpenAI error line with status 500 `server_error`, a Gemini item error
    /// 500 `INTERNAL`). Decided per submission, so a retried request can succeed.
    pub error_rate: f64,
    /// Fraction of batch requests that expire. Anthropic: those requests come back `expired`.
    /// OpenAI: the batch ends `expired`, those requests get `batch_expired` error lines and
    /// the others their results. Gemini (expiry is batch-wide there): a batch with any such
    /// request ends `BATCH_STATE_EXPIRED` with no results.
    pub expired_rate: f64,
    /// Every Nth API call (counted since the knobs were last set) answers 429 with
    /// `retry-after` (Anthropic `rate_limit_error`; OpenAI `rate_limit_exceeded`; Gemini
    /// `RESOURCE_EXHAUSTED` with a `RetryInfo` detail).
    pub rate_limit_every: Option<u64>,
    /// Every Nth API call (counted since the knobs were last set) answers a server error,
    /// alternating overloaded (Anthropic 529, OpenAI and Gemini 503) and internal (500).
    pub server_error_every: Option<u64>,
    /// Sent on injected faults as `retry-after` (whole seconds, rounded up, at least 1) and
    /// `retry-after-ms`.
    pub retry_after: Duration,
    /// Seed of every deterministic choice (answers, outcomes, ids, result order).
    pub seed: u64,
    /// Results lines in shuffled order (the real API does not guarantee order).
    pub shuffle_results: bool,
    /// If set, only this key is accepted; otherwise any non-empty key is.
    pub api_key: Option<String>,
    /// Enqueued-token limit per model (input tokens of the batches still queued or running).
    /// A batch that would go over it fails: OpenAI batches end `failed` at validation with
    /// `errors.data[0].code = "token_limit_exceeded"`; Gemini creates answer 429
    /// `RESOURCE_EXHAUSTED`. `None` (the default) means no limit. Anthropic batches are not
    /// limited.
    pub enqueued_token_limit: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            processing: Duration::from_secs(2),
            error_rate: 0.0,
            expired_rate: 0.0,
            rate_limit_every: None,
            server_error_every: None,
            retry_after: Duration::from_secs(1),
            seed: 0,
            shuffle_results: true,
            api_key: None,
            enqueued_token_limit: None,
        }
    }
}

/// The JSON form of [`SimConfig`]: every field optional, so it doubles as a patch
/// (`POST /_sim/config` changes only the fields present). Durations are in milliseconds.
/// `rate_limit_every` / `server_error_every` accept `null` or `0` to switch the fault off;
/// `api_key` accepts `null` to accept any key again. The key is never echoed back: the
/// response carries `api_key_set` instead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfigPatch {
    /// [`SimConfig::processing`] in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_ms: Option<u64>,
    /// [`SimConfig::error_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// [`SimConfig::expired_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_rate: Option<f64>,
    /// [`SimConfig::rate_limit_every`]; `null` or `0` switches it off.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_limit_every: Option<Option<u64>>,
    /// [`SimConfig::server_error_every`]; `null` or `0` switches it off.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_error_every: Option<Option<u64>>,
    /// [`SimConfig::retry_after`] in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// [`SimConfig::seed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// [`SimConfig::shuffle_results`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_results: Option<bool>,
    /// [`SimConfig::api_key`] (input only); `null` accepts any key.
    #[serde(default, with = "double_option", skip_serializing)]
    pub api_key: Option<Option<String>>,
    /// [`SimConfig::enqueued_token_limit`]; `null` or `0` removes the limit.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub enqueued_token_limit: Option<Option<u64>>,
    /// Output only: whether an API key is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_set: Option<bool>,
}

impl SimConfig {
    /// Applies a patch; fields absent from the patch are unchanged.
    pub fn apply(&mut self, patch: &SimConfigPatch) {
        if let Some(ms) = patch.processing_ms {
            self.processing = Duration::from_millis(ms);
        }
        if let Some(r) = patch.error_rate {
            self.error_rate = r;
        }
        if let Some(r) = patch.expired_rate {
            self.expired_rate = r;
        }
        if let Some(n) = patch.rate_limit_every {
            self.rate_limit_every = n.filter(|n| *n > 0);
        }
        if let Some(n) = patch.server_error_every {
            self.server_error_every = n.filter(|n| *n > 0);
        }
        if let Some(ms) = patch.retry_after_ms {
            self.retry_after = Duration::from_millis(ms);
        }
        if let Some(s) = patch.seed {
            self.seed = s;
        }
        if let Some(s) = patch.shuffle_results {
            self.shuffle_results = s;
        }
        if let Some(k) = &patch.api_key {
            self.api_key = k.clone().filter(|k| !k.is_empty());
        }
        if let Some(n) = patch.enqueued_token_limit {
            self.enqueued_token_limit = n.filter(|n| *n > 0);
        }
    }

    /// The full JSON view of this config (every knob present).
    pub fn to_patch(&self) -> SimConfigPatch {
        SimConfigPatch {
            processing_ms: Some(duration_ms(self.processing)),
            error_rate: Some(self.error_rate),
            expired_rate: Some(self.expired_rate),
            rate_limit_every: Some(self.rate_limit_every),
            server_error_every: Some(self.server_error_every),
            retry_after_ms: Some(duration_ms(self.retry_after)),
            seed: Some(self.seed),
            shuffle_results: Some(self.shuffle_results),
            api_key: None,
            enqueued_token_limit: Some(self.enqueued_token_limit),
            api_key_set: Some(self.api_key.is_some()),
        }
    }

    /// Checks the knobs are in range.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (name, r) in [
            ("error_rate", self.error_rate),
            ("expired_rate", self.expired_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be between 0 and 1, got {r}"));
            }
        }
        if self.error_rate + self.expired_rate > 1.0 {
            return Err("error_rate + expired_rate must not exceed 1".into());
        }
        Ok(())
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `Option<Option<T>>` where an absent field is `None` and an explicit `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_changes_only_present_fields() {
        let mut c = SimConfig {
            rate_limit_every: Some(3),
            ..SimConfig::default()
        };
        let p: SimConfigPatch =
            serde_json::from_str(r#"{"processing_ms": 50, "server_error_every": 4}"#).unwrap();
        c.apply(&p);
        assert_eq!(c.processing, Duration::from_millis(50));
        assert_eq!(c.rate_limit_every, Some(3));
        assert_eq!(c.server_error_every, Some(4));
        let off: SimConfigPatch =
            serde_json::from_str(r#"{"rate_limit_every": null, "server_error_every": 0}"#).unwrap();
        c.apply(&off);
        assert_eq!(c.rate_limit_every, None);
        assert_eq!(c.server_error_every, None);
        assert!(serde_json::from_str::<SimConfigPatch>(r#"{"nope": 1}"#).is_err());
        let limit: SimConfigPatch =
            serde_json::from_str(r#"{"enqueued_token_limit": 5000}"#).unwrap();
        c.apply(&limit);
        assert_eq!(c.enqueued_token_limit, Some(5000));
        c.apply(&serde_json::from_str(r#"{"enqueued_token_limit": null}"#).unwrap());
        assert_eq!(c.enqueued_token_limit, None);
    }

    #[test]
    fn view_round_trips_without_the_key() {
        let c = SimConfig {
            api_key: Some("sk-secret".into()),
            rate_limit_every: Some(7),
            ..SimConfig::default()
        };
        let json = serde_json::to_value(c.to_patch()).unwrap();
        assert!(!json.to_string().contains("sk-secret"));
        assert_eq!(json["api_key_set"], true);
        assert_eq!(json["rate_limit_every"], 7);
        assert_eq!(json["server_error_every"], serde_json::Value::Null);
        let back: SimConfigPatch = serde_json::from_value(json).unwrap();
        let mut d = SimConfig::default();
        d.apply(&back);
        assert_eq!(d.rate_limit_every, Some(7));
        assert_eq!(d.api_key, None);
    }
}
