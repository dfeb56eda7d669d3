//! Creating runs: from a JSONL file (the CLI) or from requests added in code (the library).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};
use volley_core::catalog::Catalog;
use volley_core::custom_id::fnv1a;
use volley_core::import;
use volley_core::input::{self, InputOptions, InputSource, Validation};
use volley_core::plan_estimate::Estimate;
use volley_core::run_id::new_run_id;
use volley_core::store::{NewRun, RunOptions, RunRecord};
use volley_types::RunState;

use crate::{Error, Volley};

/// Problems shown before giving up on an input.
const SHOWN_ERRORS: usize = 20;

/// How to create a run.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Model for requests that name none.
    pub model: Option<String>,
    /// `max_tokens` for requests that give none.
    pub max_tokens: Option<u32>,
    /// Options stored with the run.
    pub options: RunOptions,
    /// Output folder to record with the run.
    pub out: Option<String>,
    /// Always start a new run, even if an unfinished one has the same input.
    pub fresh: bool,
}

impl RunSpec {
    /// Sets the default model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets a hard cost cap for the run, in USD.
    pub fn max_cost_usd(mut self, cap: f64) -> Self {
        self.options.max_cost_usd = Some(cap);
        self
    }

    /// Sets how many times a request may be submitted.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.options.max_attempts = n.max(1);
        self
    }

    pub(crate) fn input_options(&self) -> InputOptions {
        InputOptions {
            default_model: self.model.clone(),
            default_max_tokens: self.max_tokens,
            load_files: false,
            ids_validated: false,
        }
    }
}

/// A run that is ready to drive.
#[derive(Debug, Clone)]
pub struct Started {
    /// The run.
    pub run: RunRecord,
    /// Whether a run with the same input and options was picked up instead of a new one.
    pub resumed: bool,
    /// The picked-up run had already completed: nothing will be submitted again.
    pub already_completed: bool,
    /// What validation counted (empty when resumed).
    pub validation: Validation,
}

impl std::ops::Deref for Started {
    type Target = str;
    fn deref(&self) -> &str {
        &self.run.id
    }
}

impl Volley {
    /// Validates an input file without storing anything.
    pub fn validate_file(&self, path: &Path, spec: &RunSpec) -> Result<Validation, Error> {
        self.validate(&InputSource::File(path.to_path_buf()), spec)
    }

    fn validate(&self, source: &InputSource, spec: &RunSpec) -> Result<Validation, Error> {
        let validation = self.validate_input(source, spec)?;
        self.check_providers(&validation)?;
        if let Some(cap) = spec.options.max_cost_usd {
            self.check_cap(cap, &validation)?;
        }
        Ok(validation)
    }

    /// A cap can only hold if every model has a price.
    fn check_cap(&self, cap: f64, validation: &Validation) -> Result<(), Error> {
        if !cap.is_finite() || cap < 0.0 {
            return Err(Error::Config(format!(
                "--max-cost-usd must be a non-negative amount, not {cap}"
            )));
        }
        for (provider, model) in validation.groups.keys() {
            if self
                .catalog
                .model(model)
                .is_none_or(|m| m.provider != *provider)
            {
                return Err(Error::Config(format!(
                    "{provider}/{model} has no price in the catalog, so a cost cap cannot be enforced; add it to a catalog file (docs/catalog.md) or run without --max-cost-usd"
                )));
            }
        }
        Ok(())
    }

    fn validate_input(&self, source: &InputSource, spec: &RunSpec) -> Result<Validation, Error> {
        validate_input(&self.catalog, source, spec)
    }

    fn check_providers(&self, validation: &Validation) -> Result<(), Error> {
        let configured = self.configured_providers();
        for ((provider, model), count) in &validation.groups {
            if configured.contains(provider) {
                continue;
            }
            let settings = self.catalog.provider(*provider);
            return Err(Error::Config(format!(
                "{count} request(s) use {model} on {provider}, which has no key: set {} (or run with --simulate)",
                settings.key_env.join(" or ")
            )));
        }
        Ok(())
    }

    /// Validates `path`, then creates and imports a run — or returns the unfinished run that
    /// has the same input and options (so running a command twice resumes instead of paying
    /// twice). Nothing is stored when the input has a problem.
    pub async fn start_file(&self, path: &Path, spec: RunSpec) -> Result<Started, Error> {
        let fingerprint = fingerprint_file(path, &spec)?;
        self.start(
            InputSource::File(path.to_path_buf()),
            Some(path),
            fingerprint,
            spec,
        )
        .await
    }

    async fn start(
        &self,
        source: InputSource,
        input: Option<&Path>,
        fingerprint: Fingerprint,
        spec: RunSpec,
    ) -> Result<Started, Error> {
        let content_hash = fingerprint.content;
        let fingerprint = fingerprint.key();
        if !spec.fresh {
            // Never pay twice for the same input: an unfinished run is resumed, and a completed
            // one is reused (its results are written again; nothing is submitted).
            let mut found = self.store.resumable_run(&fingerprint).await?;
            if found.is_none() {
                found = self.store.runs().await?.into_iter().find(|run| {
                    run.fingerprint.as_deref() == Some(fingerprint.as_str())
                        && run.state == RunState::Completed
                        && run.total > 0
                });
            }
            if let Some(run) = found {
                return Ok(Started {
                    already_completed: run.state == RunState::Completed,
                    run,
                    resumed: true,
                    validation: Validation::default(),
                });
            }
        }
        let validation = self.validate(&source, &spec)?;
        let id = new_run_id(Timestamp::now());
        let mut options = spec.options.clone();
        options.simulate = self.simulator.is_some();
        self.store
            .create_run(&NewRun {
                id: id.clone(),
                created_at: Timestamp::now(),
                input: input.map(|p| p.display().to_string()),
                fingerprint: Some(fingerprint),
                // DESIGN.md §3.2: results go to volley-results/<run id>/ unless told otherwise.
                out: Some(
                    spec.out
                        .clone()
                        .unwrap_or_else(|| format!("volley-results/{id}")),
                ),
                options,
            })
            .await?;
        import::import(
            self.store.as_ref(),
            self.catalog.clone(),
            self.providers.clone(),
            source,
            spec.input_options(),
            &id,
            content_hash,
        )
        .await?;
        Ok(Started {
            run: self.run(&id).await?,
            resumed: false,
            already_completed: false,
            validation,
        })
    }

    /// Starts building a run from requests added in code.
    pub fn new_run(&self, spec: RunSpec) -> RunBuilder<'_> {
        RunBuilder {
            volley: self,
            spec,
            lines: Vec::new(),
            base_dir: PathBuf::from("."),
        }
    }
}

/// Checks the input alone (no keys needed).
pub(crate) fn validate_input(
    catalog: &Catalog,
    source: &InputSource,
    spec: &RunSpec,
) -> Result<Validation, Error> {
    let validation = input::validate(source, catalog, &spec.input_options(), SHOWN_ERRORS)
        .map_err(|e| Error::Input {
            errors: vec![e],
            count: 1,
        })?;
    if validation.error_count > 0 {
        return Err(Error::Input {
            errors: validation.errors,
            count: validation.error_count,
        });
    }
    Ok(validation)
}

/// What running `path` would cost and how it would be batched, with no network call and
/// nothing stored. Also validates: a problem in the input is an [`Error::Input`]. (The same
/// as [`crate::estimate`]`(..).offline()`; that builder also counts tokens with the providers.)
pub fn estimate_file(
    catalog: &Catalog,
    path: &Path,
    spec: &RunSpec,
    max_batch_requests: Option<u64>,
    enqueued_token_budget: Option<u64>,
) -> Result<Estimate, Error> {
    crate::estimate(catalog, path)
        .spec(spec.clone())
        .max_batch_requests(max_batch_requests)
        .enqueued_token_budget(enqueued_token_budget)
        .offline()
}

/// Adds requests in code; they are validated exactly like a JSONL file.
pub struct RunBuilder<'v> {
    volley: &'v Volley,
    spec: RunSpec,
    lines: Vec<u8>,
    base_dir: PathBuf,
}

impl RunBuilder<'_> {
    /// Adds a request in the input format of DESIGN.md §3.1.
    pub fn request(mut self, line: Value) -> Self {
        serde_json::to_writer(&mut self.lines, &line).expect("JSON values serialize");
        self.lines.push(b'\n');
        self
    }

    /// Adds a prompt with an id.
    pub fn prompt(self, id: &str, prompt: &str) -> Self {
        self.request(json!({"id": id, "prompt": prompt}))
    }

    /// Folder that relative `files` paths are read from (default: the current folder).
    pub fn files_from(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = dir.into();
        self
    }

    /// Validates and stores the run; drive it with [`Volley::drive`].
    pub async fn start(self) -> Result<Started, Error> {
        let fingerprint = fingerprint_bytes(&self.lines, &self.spec);
        let source = InputSource::Memory {
            jsonl: Arc::new(self.lines),
            base_dir: self.base_dir,
        };
        let mut spec = self.spec;
        // Code that builds requests expects a new run each time.
        spec.fresh = true;
        self.volley.start(source, None, fingerprint, spec).await
    }
}

fn spec_fingerprint(spec: &RunSpec) -> String {
    format!(
        "{:?}|{:?}|{}|{:?}",
        spec.model, spec.max_tokens, spec.options.max_attempts, spec.options.max_cost_usd
    )
}

/// What makes two runs the same run: the input's content and the options.
#[derive(Debug, Clone, Copy)]
struct Fingerprint {
    /// FNV-1a of the input's bytes.
    content: u64,
    /// FNV-1a of the options that change what is submitted.
    spec: u64,
}

impl Fingerprint {
    fn new(content: u64, spec: &RunSpec) -> Self {
        Self {
            content,
            spec: fnv1a(spec_fingerprint(spec).as_bytes()),
        }
    }

    /// As stored with the run.
    fn key(self) -> String {
        format!("{:016x}-{:016x}", self.content, self.spec)
    }
}

fn fingerprint_bytes(bytes: &[u8], spec: &RunSpec) -> Fingerprint {
    Fingerprint::new(fnv1a(bytes), spec)
}

/// Identifies the file's content and the options, streaming the file.
fn fingerprint_file(path: &Path, spec: &RunSpec) -> Result<Fingerprint, Error> {
    let content = InputSource::File(path.to_path_buf())
        .content_hash()
        .map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok(Fingerprint::new(content, spec))
}
