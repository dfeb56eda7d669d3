//! The OpenAI surface (provider-apis.md §B): Files, Batches, Chat Completions and Responses,
//! under `/v1` with `Authorization: Bearer`.
//!
//! A batch reads its input file when it is created (the file may then be deleted); its
//! requests become compact records, and its output and error files are generated line by line
//! from them when read. Status flow: `validating` (first tenth of the processing time, counts
//! 0/0/0) → `in_progress` (counts grow as requests finish) → `finalizing` (last tenth) →
//! `completed`, or `expired` when a request's fate is to expire; `failed` at the end of
//! validation for an invalid input file or the enqueued-token limit; `cancelling` →
//! `cancelled` within [`CANCEL_GRACE`].

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::answer::{Answer, Style, generate};
use crate::batch_table::{BatchTable, TableBatch};
use crate::convert::{self, Interner, Prepared, answer_text, truncated};
use crate::files::{self, Content, FileApi, FileEntry, Generated, Lines};
use crate::hash::{mix2, mix64, push_hex};
use crate::http::{ApiError, App, json_response, query_param, read_body};
use crate::lifecycle::Timeline;
use crate::state::{BatchData, CANCEL_GRACE, CreateKnobs, Fate, Inner, Invalid, Outcome, Rec};

/// Largest file upload (the Files API limit).
pub(crate) const FILE_LIMIT: usize = 512 * 1024 * 1024;
/// Largest batch input file.
pub(crate) const BATCH_FILE_LIMIT: usize = 200 * 1024 * 1024;
/// Most requests in one batch.
pub(crate) const MAX_REQUESTS: usize = 50_000;
/// Largest JSON body of the other routes.
const JSON_LIMIT: usize = 32 * 1024 * 1024;
/// `errors.data` holds at most this many entries.
const MAX_ERRORS: usize = 1000;
const BATCH_PREFIX: &str = "batch_";
const EXPIRY: SignedDuration = SignedDuration::from_hours(24);
/// Default expiry of `purpose=batch` uploads and of output files.
const FILE_EXPIRY: SignedDuration = SignedDuration::from_hours(30 * 24);
const PURPOSES: &[&str] = &[
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];
const ENDPOINTS: &[&str] = &[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
];
/// Salt of the ids inside result lines.
const LINE_SALT: u64 = 0x6f70_656e_6169_0001;

/// The batch endpoints the simulator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Responses,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Responses => "/v1/responses",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "/v1/chat/completions" => Some(Endpoint::Chat),
            "/v1/responses" => Some(Endpoint::Responses),
            _ => None,
        }
    }

    fn prepare(self, body: &Value) -> Result<Prepared, Invalid> {
        match self {
            Endpoint::Chat => {
                let p = convert::chat(body, true)?;
                if p.choices > 1 {
                    return Err(Invalid::new(
                        "Invalid 'n': the simulator answers n = 1 in batch requests.",
                    )
                    .param("n")
                    .code("unsupported_value"));
                }
                Ok(p)
            }
            Endpoint::Responses => convert::responses(body, true),
        }
    }
}

/// An `errors.data` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) param: Option<&'static str>,
    pub(crate) line: Option<u64>,
}

impl BatchError {
    fn json(&self) -> Value {
        json!({"code": self.code, "message": self.message, "param": self.param, "line": self.line})
    }
}

#[derive(Debug)]
enum Work {
    Ok {
        data: Arc<BatchData>,
        expires: bool,
        tokens: u64,
    },
    Failed(Vec<BatchError>),
}

/// What a finished batch left behind.
#[derive(Debug)]
struct Finished {
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    completed: u64,
    failed: u64,
    usage: Arc<OnceLock<UsageSum>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct UsageSum {
    input: u64,
    output: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Validating => "validating",
            Status::Failed => "failed",
            Status::InProgress => "in_progress",
            Status::Finalizing => "finalizing",
            Status::Completed => "completed",
            Status::Expired => "expired",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
        }
    }

    /// Whether results (files) exist in this status.
    fn has_results(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Expired | Status::Cancelled
        )
    }
}

#[derive(Debug)]
pub(crate) struct Batch {
    id: String,
    endpoint: Endpoint,
    input_file_id: String,
    metadata: Option<Value>,
    model: Option<String>,
    timeline: Timeline,
    work: Work,
    /// `output_expires_after.seconds`.
    output_expiry: Option<SignedDuration>,
    finished: Option<Finished>,
}

/// What the usage of a finished batch is computed from (outside the state lock).
type UsageSource = (Arc<OnceLock<UsageSum>>, Arc<BatchData>, Option<f64>);

impl Batch {
    fn status(&self, now: Instant) -> Status {
        let t = &self.timeline;
        if t.cancel.is_some() {
            return if now < t.ends {
                Status::Cancelling
            } else {
                Status::Cancelled
            };
        }
        if now < t.validated() {
            return Status::Validating;
        }
        let expires = match &self.work {
            Work::Failed(_) => return Status::Failed,
            Work::Ok { expires, .. } => *expires,
        };
        if now < t.work_done() || (expires && now < t.ends) {
            Status::InProgress
        } else if now < t.ends {
            Status::Finalizing
        } else if expires {
            Status::Expired
        } else {
            Status::Completed
        }
    }

    fn cancel_fraction(&self) -> Option<f64> {
        self.timeline.cancel.map(|c| c.fraction)
    }

    /// Creates the output and error files once the batch has results.
    fn finish(&mut self, now: Instant, files: &mut files::Store) {
        if self.finished.is_some() || !self.status(now).has_results() {
            return;
        }
        let Work::Ok { data, .. } = &self.work else {
            // Cancelled while validating an invalid file: nothing ran.
            self.finished = Some(Finished {
                output_file_id: None,
                error_file_id: None,
                completed: 0,
                failed: 0,
                usage: Arc::new(OnceLock::new()),
            });
            return;
        };
        let fraction = self.cancel_fraction();
        let n = u32::try_from(data.records.len()).unwrap_or(u32::MAX);
        let mut order: Vec<u32> = (0..n).collect();
        if data.shuffle {
            fastrand::Rng::with_seed(mix2(data.seed, data.seq ^ LINE_SALT)).shuffle(&mut order);
        }
        let (mut output, mut errors) = (Vec::new(), Vec::new());
        let (mut completed, mut failed) = (0, 0);
        for i in order {
            match data.records[i as usize].outcome(fraction) {
                Outcome::Succeeded => {
                    completed += 1;
                    output.push(i);
                }
                Outcome::Errored => {
                    failed += 1;
                    errors.push(i);
                }
                Outcome::Canceled | Outcome::Expired => errors.push(i),
            }
        }
        let ended = self.timeline.wall(self.timeline.ends);
        let created = ended.as_second();
        let expires_at = ended
            .saturating_add(self.output_expiry.unwrap_or(FILE_EXPIRY))
            .ok();
        let mut add = |order: Vec<u32>, suffix: &str| -> Option<String> {
            if order.is_empty() {
                return None;
            }
            let lines = OaLines {
                data: data.clone(),
                order,
                endpoint: self.endpoint,
                cancel_fraction: fraction,
                created,
            };
            let entry = files.add(
                FileApi::OpenAi,
                None,
                format!("{}_{suffix}.jsonl", self.id),
                "batch_output",
                "application/jsonl",
                ended,
                expires_at,
                Content::Generated(Generated::new(Arc::new(lines))),
                None,
                data.seed,
            );
            Some(entry.id.clone())
        };
        let output_file_id = add(output, "output");
        let error_file_id = add(errors, "error");
        self.finished = Some(Finished {
            output_file_id,
            error_file_id,
            completed,
            failed,
            usage: Arc::new(OnceLock::new()),
        });
    }

    /// The `Batch` object at `now`; usage is filled in by [`render`] outside the lock.
    fn view(&self, now: Instant) -> (Value, Option<UsageSource>) {
        let status = self.status(now);
        let t = &self.timeline;
        let ts = |at: Instant| Value::from(t.wall(at).as_second());
        let total = match &self.work {
            Work::Ok { data, .. } => data.records.len() as u64,
            Work::Failed(_) => 0,
        };
        let (counts, usage_source) = match (status, &self.work, &self.finished) {
            (Status::Validating | Status::Failed, _, _) => ((0, 0, 0), None),
            (_, Work::Ok { data, .. }, Some(f)) => (
                (total, f.completed, f.failed),
                Some((f.usage.clone(), data.clone(), self.cancel_fraction())),
            ),
            (_, Work::Ok { data, .. }, None) => {
                let progress = t.progress(now);
                let (mut completed, mut failed) = (0, 0);
                for r in &data.records {
                    if r.done_by(progress) {
                        match r.outcome(None) {
                            Outcome::Succeeded => completed += 1,
                            Outcome::Errored => failed += 1,
                            _ => {}
                        }
                    }
                }
                ((total, completed, failed), None)
            }
            (_, Work::Failed(_), _) => ((0, 0, 0), None),
        };
        let ran = !matches!(status, Status::Validating | Status::Failed)
            && t.cancel.is_none_or(|c| c.at >= t.validated());
        let errors = match &self.work {
            Work::Failed(errors) if status == Status::Failed => json!({
                "object": "list",
                "data": errors.iter().map(BatchError::json).collect::<Vec<_>>(),
            }),
            _ => Value::Null,
        };
        let finished = self.finished.as_ref();
        let obj = json!({
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint.path(),
            "model": self.model,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": status.as_str(),
            "output_file_id": finished.and_then(|f| f.output_file_id.clone()),
            "error_file_id": finished.and_then(|f| f.error_file_id.clone()),
            "created_at": t.created_at.as_second(),
            "in_progress_at": if ran { ts(t.validated()) } else { Value::Null },
            "expires_at": t.wall_after(EXPIRY).as_second(),
            "finalizing_at": if matches!(status, Status::Finalizing | Status::Completed) {
                ts(t.work_done())
            } else {
                Value::Null
            },
            "completed_at": if status == Status::Completed { ts(t.ends) } else { Value::Null },
            "failed_at": if status == Status::Failed { ts(t.validated()) } else { Value::Null },
            "expired_at": if status == Status::Expired { ts(t.ends) } else { Value::Null },
            "cancelling_at": t.cancel.map_or(Value::Null, |c| Value::from(c.at_wall.as_second())),
            "cancelled_at": if status == Status::Cancelled { ts(t.ends) } else { Value::Null },
            "request_counts": {"total": counts.0, "completed": counts.1, "failed": counts.2},
            "usage": usage_json(UsageSum::default()),
            "metadata": self.metadata.clone().unwrap_or(Value::Null),
        });
        (obj, usage_source)
    }
}

fn usage_json(u: UsageSum) -> Value {
    json!({"input_tokens": u.input, "input_tokens_details": {"cached_tokens": 0},
           "output_tokens": u.output, "output_tokens_details": {"reasoning_tokens": 0},
           "total_tokens": u.input + u.output})
}

/// Finishes a [`Batch::view`]: computes the usage of a finished batch (once).
fn render((mut obj, source): (Value, Option<UsageSource>)) -> Value {
    if let Some((cell, data, fraction)) = source {
        let usage = *cell.get_or_init(|| {
            let mut sum = UsageSum::default();
            for r in &data.records {
                if r.outcome(fraction) == Outcome::Succeeded {
                    sum.input += u64::from(r.input_tokens);
                    sum.output +=
                        generate(&r.style, r.content_hash, u64::from(r.max_tokens)).output_tokens;
                }
            }
            sum
        });
        obj["usage"] = usage_json(usage);
    }
    obj
}

/// OpenAI batches.
pub(crate) type Store = BatchTable<Batch>;

impl TableBatch for Batch {
    fn id(&self) -> &str {
        &self.id
    }

    fn seq_of(id: &str) -> Option<u64> {
        crate::hash::parse_hex(id.strip_prefix(BATCH_PREFIX)?.get(..8)?)
    }

    fn finish(&mut self, now: Instant, files: &mut files::Store) {
        Batch::finish(self, now, files);
    }
}

impl Store {
    /// Input tokens of `model`'s batches that are still queued or running.
    fn enqueued_tokens(&self, model: &str, now: Instant) -> u64 {
        self.batches
            .values()
            .filter(|b| b.model.as_deref() == Some(model))
            .filter(|b| {
                matches!(
                    b.status(now),
                    Status::Validating
                        | Status::InProgress
                        | Status::Finalizing
                        | Status::Cancelling
                )
            })
            .map(|b| match &b.work {
                Work::Ok { tokens, .. } => *tokens,
                Work::Failed(_) => 0,
            })
            .sum()
    }
}

/// The lines of an output or error file.
#[derive(Debug)]
struct OaLines {
    data: Arc<BatchData>,
    order: Vec<u32>,
    endpoint: Endpoint,
    cancel_fraction: Option<f64>,
    created: i64,
}

impl Lines for OaLines {
    fn count(&self) -> usize {
        self.order.len()
    }

    fn write(&self, pos: usize, out: &mut Vec<u8>) {
        let index = self.order[pos] as usize;
        let rec = &self.data.records[index];
        let key = mix2(
            mix2(self.data.seed, self.data.seq ^ LINE_SALT),
            index as u64,
        );
        let line = result_line(
            rec,
            rec.outcome(self.cancel_fraction),
            self.endpoint,
            key,
            self.created,
        );
        let _ = serde_json::to_writer(&mut *out, &line);
        out.push(b'\n');
    }
}

fn hex_id(prefix: &str, h: u64) -> String {
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    push_hex(&mut s, mix64(h), 16);
    push_hex(&mut s, mix64(h ^ 0x5bd1_e995_0000_0001), 16);
    s
}

fn base62_id(prefix: &str, h: u64) -> String {
    let mut s = String::from(prefix);
    crate::hash::push_base62(&mut s, mix64(h), 11);
    crate::hash::push_base62(&mut s, mix64(h ^ 0x0bad_cafe), 11);
    s
}

/// One line of an output or error file.
fn result_line(rec: &Rec, outcome: Outcome, endpoint: Endpoint, key: u64, created: i64) -> Value {
    let id = hex_id("batch_req_", key);
    let request_id = hex_id("", key ^ 0x7265_7175);
    let response = |status: u16, body: Value| {
        json!({"id": id, "custom_id": &*rec.custom_id,
               "response": {"status_code": status, "request_id": request_id, "body": body},
               "error": null})
    };
    let no_response = |code: &str, message: &str| {
        json!({"id": id, "custom_id": &*rec.custom_id, "response": null,
               "error": {"code": code, "message": message}})
    };
    match outcome {
        Outcome::Succeeded => {
            let answer = generate(&rec.style, rec.content_hash, u64::from(rec.max_tokens));
            let input = u64::from(rec.input_tokens);
            let body = match endpoint {
                Endpoint::Chat => chat_completion(
                    base62_id("chatcmpl-", key),
                    created,
                    &rec.model,
                    &answer,
                    input,
                    1,
                ),
                Endpoint::Responses => {
                    let text = match &rec.style {
                        Style::Json(schema) => json!({"format": {"type": "json_schema",
                            "name": "response", "schema": &**schema, "strict": true}, "verbosity": "medium"}),
                        _ => json!({"format": {"type": "text"}, "verbosity": "medium"}),
                    };
                    response_object(
                        hex_id("resp_", key),
                        hex_id("msg_", key ^ 1),
                        created,
                        &rec.model,
                        &answer,
                        input,
                        (rec.max_tokens != u32::MAX).then_some(u64::from(rec.max_tokens)),
                        text,
                        Value::Null,
                        json!({}),
                    )
                }
            };
            response(200, body)
        }
        Outcome::Errored => match (&rec.invalid, rec.fate) {
            (Some(invalid), _) => response(
                400,
                json!({"error": {"message": invalid.message, "type": "invalid_request_error",
                                 "param": invalid.param, "code": invalid.code}}),
            ),
            _ => response(
                500,
                json!({"error": {"message": "The server had an error while processing your request. Sorry about that! (simulated; retrying may succeed)",
                                 "type": "server_error", "param": null, "code": null}}),
            ),
        },
        Outcome::Expired => no_response(
            "batch_expired",
            "This request could not be executed before the completion window expired.",
        ),
        Outcome::Canceled => no_response(
            "batch_cancelled",
            "This request could not be executed before the batch was cancelled.",
        ),
    }
}

/// A `chat.completion` object.
pub(crate) fn chat_completion(
    id: String,
    created: i64,
    model: &str,
    answer: &Answer,
    prompt_tokens: u64,
    n: u32,
) -> Value {
    let text = answer_text(answer);
    let finish = if truncated(answer) { "length" } else { "stop" };
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            json!({"index": i, "message": {"role": "assistant", "content": text,
                   "refusal": null, "annotations": []},
                   "logprobs": null, "finish_reason": finish})
        })
        .collect();
    let completion = answer.output_tokens * u64::from(n);
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_volleysim",
    })
}

/// A `response` object (Responses API).
#[allow(clippy::too_many_arguments)]
pub(crate) fn response_object(
    id: String,
    message_id: String,
    created: i64,
    model: &str,
    answer: &Answer,
    input_tokens: u64,
    max_output_tokens: Option<u64>,
    text: Value,
    instructions: Value,
    metadata: Value,
) -> Value {
    let cut = truncated(answer);
    let output = answer.output_tokens;
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": if cut { "incomplete" } else { "completed" },
        "background": false,
        "completed_at": if cut { Value::Null } else { Value::from(created) },
        "error": null,
        "incomplete_details": if cut { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "max_tool_calls": null,
        "model": model,
        "output": [{
            "id": message_id,
            "type": "message",
            "status": if cut { "incomplete" } else { "completed" },
            "role": "assistant",
            "content": [{"type": "output_text", "text": answer_text(answer),
                         "annotations": [], "logprobs": []}],
        }],
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "service_tier": "default",
        "store": true,
        "temperature": 1.0,
        "text": text,
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output,
        },
        "user": null,
        "metadata": metadata,
    })
}

// ---------------------------------------------------------------------------------------------
// Input files

/// Limits of a batch input file (constants in production, small in unit tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_bytes: usize,
    pub(crate) max_requests: usize,
}

pub(crate) const LIMITS: Limits = Limits {
    max_bytes: BATCH_FILE_LIMIT,
    max_requests: MAX_REQUESTS,
};

/// A valid input file.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) records: Vec<Rec>,
    pub(crate) model: String,
    pub(crate) tokens: u64,
}

/// Checks an input file (JSONL of `{custom_id, method, url, body}`) and prepares its records.
/// Problems with the file itself fail the batch (`errors.data`); problems inside a `body`
/// become per-request error lines.
pub(crate) fn parse_input(
    bytes: &[u8],
    endpoint: Endpoint,
    seed: u64,
    limits: Limits,
) -> Result<Parsed, Vec<BatchError>> {
    let fail = |code, message: String| {
        Err(vec![BatchError {
            code,
            message,
            param: None,
            line: None,
        }])
    };
    if bytes.len() > limits.max_bytes {
        return fail(
            "file_too_large",
            format!(
                "The batch input file is larger than the {} byte maximum (got {} bytes).",
                limits.max_bytes,
                bytes.len()
            ),
        );
    }
    let lines: Vec<(u64, &[u8])> = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.is_empty() {
        return fail(
            "empty_file",
            "The batch input file is empty. Please ensure that the batch contains at least one request.".into(),
        );
    }
    if lines.len() > limits.max_requests {
        return fail(
            "too_many_tasks",
            format!(
                "The batch input file contains {} requests; a batch can contain at most {}.",
                lines.len(),
                limits.max_requests
            ),
        );
    }
    let mut errors = Vec::new();
    let push = |errors: &mut Vec<BatchError>, e: BatchError| {
        if errors.len() < MAX_ERRORS {
            errors.push(e);
        }
    };
    let mut seen: HashSet<Box<str>> = HashSet::with_capacity(lines.len());
    let mut model: Option<String> = None;
    let mut interner = Interner::default();
    let mut records = Vec::with_capacity(lines.len());
    let mut tokens = 0u64;
    for (line, raw) in lines {
        let err = |code, message: &str, param| BatchError {
            code,
            message: message.to_owned(),
            param,
            line: Some(line),
        };
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(raw) else {
            push(
                &mut errors,
                err(
                    "invalid_json_line",
                    "This line is not parseable as valid JSON.",
                    None,
                ),
            );
            continue;
        };
        let custom_id = match obj.get("custom_id") {
            Some(Value::String(c)) if !c.is_empty() => c.as_str(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                push(
                    &mut errors,
                    err(
                        "missing_required_parameter",
                        "Missing required parameter: 'custom_id'.",
                        Some("custom_id"),
                    ),
                );
                continue;
            }
            Some(_) => {
                push(
                    &mut errors,
                    err(
                        "invalid_type",
                        "Invalid type for 'custom_id': expected a string.",
                        Some("custom_id"),
                    ),
                );
                continue;
            }
        };
        match obj.get("method").and_then(Value::as_str) {
            Some("POST") => {}
            None => {
                push(
                    &mut errors,
                    err(
                        "missing_required_parameter",
                        "Missing required parameter: 'method'.",
                        Some("method"),
                    ),
                );
                continue;
            }
            Some(_) => {
                push(
                    &mut errors,
                    err(
                        "invalid_value",
                        "Invalid value for 'method': only POST is supported.",
                        Some("method"),
                    ),
                );
                continue;
            }
        }
        match obj.get("url").and_then(Value::as_str) {
            None => {
                push(
                    &mut errors,
                    err(
                        "missing_required_parameter",
                        "Missing required parameter: 'url'.",
                        Some("url"),
                    ),
                );
                continue;
            }
            Some(u) if u != endpoint.path() => {
                push(
                    &mut errors,
                    err(
                        "url_mismatch",
                        &format!(
                            "The URL provided for this request ('{u}') does not match the batch endpoint ('{}').",
                            endpoint.path()
                        ),
                        Some("url"),
                    ),
                );
                continue;
            }
            Some(_) => {}
        }
        let Some(body) = obj.get("body").filter(|b| b.is_object()) else {
            push(
                &mut errors,
                err(
                    "missing_required_parameter",
                    "Missing required parameter: 'body' (a JSON object).",
                    Some("body"),
                ),
            );
            continue;
        };
        let Some(line_model) = body.get("model").and_then(Value::as_str) else {
            push(
                &mut errors,
                err(
                    "missing_required_parameter",
                    "Missing required parameter: 'body.model'.",
                    Some("body.model"),
                ),
            );
            continue;
        };
        match &model {
            None => model = Some(line_model.to_owned()),
            Some(m) if m != line_model => {
                push(
                    &mut errors,
                    err(
                        "model_mismatch",
                        &format!(
                            "The provided model '{line_model}' does not match the model '{m}' of the other requests; a batch can use only one model."
                        ),
                        Some("body.model"),
                    ),
                );
                continue;
            }
            Some(_) => {}
        }
        if !seen.insert(custom_id.into()) {
            push(
                &mut errors,
                err(
                    "duplicate_custom_id",
                    &format!(
                        "The custom_id '{custom_id}' is a duplicate of another request's. The custom_id parameter must be unique for each request in a batch."
                    ),
                    Some("custom_id"),
                ),
            );
            continue;
        }
        if !errors.is_empty() {
            continue;
        }
        let model_arc = interner.model(line_model);
        let rec = match endpoint.prepare(body) {
            Ok(p) => {
                tokens += p.input_tokens();
                p.record(custom_id.into(), model_arc, seed, &mut interner)
            }
            Err(invalid) => convert::invalid_record(custom_id.into(), model_arc, invalid),
        };
        records.push(rec);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Parsed {
        records,
        model: model.unwrap_or_default(),
        tokens,
    })
}

// ---------------------------------------------------------------------------------------------
// Routes

fn invalid_url(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("Invalid URL ({method} {path})"),
    )
}

fn no_such_file(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("No such File object: {id}"),
    )
    .param("id")
}

fn no_such_batch(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("No batch found with id '{id}'."),
    )
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "Request body too large.",
    )
}

async fn json_body(body: Body, limit: usize) -> Result<Value, ApiError> {
    let bytes = read_body(body, limit)
        .await
        .map_err(ApiError::invalid)?
        .ok_or_else(too_large)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(format!(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) {e}"
        ))
    })
}

/// Answers an OpenAI call.
pub(crate) async fn handle(app: App, req: Request) -> Response {
    match route(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(app: &App, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(invalid_url(&parts.method, &path));
    };
    let segs: Vec<&str> = rest.split('/').collect();
    match (&parts.method, segs.as_slice()) {
        (&Method::POST, ["files"]) => files_create(app, &parts.headers, body).await,
        (&Method::GET, ["files"]) => files_list(app, &parts.uri),
        (&Method::GET, ["files", id]) => file_get(app, id),
        (&Method::DELETE, ["files", id]) => file_delete(app, id),
        (&Method::GET, ["files", id, "content"]) => file_content(app, id),
        (&Method::POST, ["batches"]) => batches_create(app, body).await,
        (&Method::GET, ["batches"]) => batches_list(app, &parts.uri),
        (&Method::GET, ["batches", id]) => batch_get(app, id),
        (&Method::POST, ["batches", id, "cancel"]) => batch_cancel(app, id),
        (&Method::POST, ["chat", "completions"]) => chat_create(app, body).await,
        (&Method::POST, ["responses"]) => responses_create(app, body).await,
        (&Method::POST, ["responses", "input_tokens"]) => responses_input_tokens(body).await,
        _ => Err(invalid_url(&parts.method, &path)),
    }
}

fn file_json(f: &FileEntry) -> Value {
    json!({
        "id": f.id,
        "object": "file",
        "bytes": f.content.size(),
        "created_at": f.created_at.as_second(),
        "expires_at": f.expires_at.map(Timestamp::as_second),
        "filename": f.name,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": null,
    })
}

async fn files_create(app: &App, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = crate::multipart::boundary(content_type).ok_or_else(|| {
        ApiError::invalid(
            "Invalid Content-Type header: expected multipart/form-data with a boundary.",
        )
    })?;
    let body = read_body(body, FILE_LIMIT + 1024 * 1024)
        .await
        .map_err(ApiError::invalid)?
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "File is too large: the maximum file size is {FILE_LIMIT} bytes."
            ))
            .param("file")
        })?;
    let parts = crate::multipart::parse(&body, &boundary).map_err(ApiError::invalid)?;
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let text = |name: &str| field(name).map(|p| String::from_utf8_lossy(&p.data).into_owned());
    let missing = |name: &str| {
        ApiError::invalid(format!("Missing required parameter: '{name}'."))
            .param(name)
            .code("missing_required_parameter")
    };
    let file = field("file").ok_or_else(|| missing("file"))?;
    let purpose = text("purpose").ok_or_else(|| missing("purpose"))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(format!(
            "Invalid value: '{purpose}'. Supported values are: 'assistants', 'batch', 'fine-tune', 'vision', 'user_data', and 'evals'."
        ))
        .param("purpose")
        .code("invalid_value"));
    }
    let filename = file.filename.clone().unwrap_or_else(|| "upload".into());
    if file.data.len() > FILE_LIMIT {
        return Err(ApiError::invalid(format!(
            "File is too large: the maximum file size is {FILE_LIMIT} bytes."
        ))
        .param("file"));
    }
    if purpose == "batch" && !filename.ends_with(".jsonl") {
        return Err(
            ApiError::invalid("Invalid file format for Batch API. Must be .jsonl").param("file"),
        );
    }
    let created = Timestamp::now();
    let expiry = match (
        text("expires_after[anchor]"),
        text("expires_after[seconds]"),
    ) {
        (None, None) => (purpose == "batch").then_some(FILE_EXPIRY),
        (anchor, seconds) => {
            if anchor.as_deref() != Some("created_at") {
                return Err(ApiError::invalid(
                    "Invalid 'expires_after[anchor]': expected 'created_at'.",
                )
                .param("expires_after[anchor]")
                .code("invalid_value"));
            }
            match seconds.and_then(|s| s.trim().parse::<i64>().ok()) {
                Some(s) if (3600..=2_592_000).contains(&s) => Some(SignedDuration::from_secs(s)),
                _ => {
                    return Err(ApiError::invalid(
                        "Invalid 'expires_after[seconds]': expected an integer between 3600 and 2592000.",
                    )
                    .param("expires_after[seconds]")
                    .code("invalid_value"));
                }
            }
        }
    };
    let seed = app.config().seed;
    let data = file.data.clone();
    drop(parts);
    // Keep only the file's bytes, not the whole multipart body.
    let data = if data.len() + 4096 < body.len() {
        Bytes::copy_from_slice(&data)
    } else {
        data
    };
    let entry = {
        let mut inner = app.inner();
        inner.stats.files_uploaded += 1;
        inner
            .files
            .add(
                FileApi::OpenAi,
                None,
                filename,
                &purpose,
                "application/octet-stream",
                created,
                expiry.and_then(|d| created.saturating_add(d).ok()),
                Content::Stored(data),
                None,
                seed,
            )
            .clone()
    };
    Ok(json_response(&file_json(&entry)))
}

fn refreshed(app: &App) -> std::sync::MutexGuard<'_, Inner> {
    let mut inner = app.inner();
    inner.refresh(Instant::now());
    inner
}

fn files_list(app: &App, uri: &Uri) -> Result<Response, ApiError> {
    let limit = match query_param(uri, "limit") {
        None => 10_000,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "Invalid 'limit': expected an integer between 1 and 10000, got '{l}'."
                ))
                .param("limit")
                .code("invalid_value")
            })?,
    };
    let ascending = match query_param(uri, "order").as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::invalid(format!(
                "Invalid value: '{o}'. Supported values are: 'asc' and 'desc'."
            ))
            .param("order")
            .code("invalid_value"));
        }
    };
    let after = match query_param(uri, "after") {
        None => None,
        Some(a) => Some(files::Store::openai_seq(&a).ok_or_else(|| {
            ApiError::invalid(format!("Invalid 'after': '{a}' is not a file id."))
                .param("after")
                .code("invalid_value")
        })?),
    };
    let purpose = query_param(uri, "purpose");
    let (page, has_more) =
        refreshed(app)
            .files
            .page(FileApi::OpenAi, ascending, after, limit, |f| {
                purpose.as_deref().is_none_or(|p| f.purpose == p)
            });
    let data: Vec<Value> = page.iter().map(file_json).collect();
    Ok(json_response(&json!({
        "object": "list",
        "first_id": page.first().map(|f| f.id.clone()),
        "last_id": page.last().map(|f| f.id.clone()),
        "has_more": has_more,
        "data": data,
    })))
}

fn file_get(app: &App, id: &str) -> Result<Response, ApiError> {
    let entry = refreshed(app)
        .files
        .get(FileApi::OpenAi, id)
        .cloned()
        .ok_or_else(|| no_such_file(id))?;
    Ok(json_response(&file_json(&entry)))
}

fn file_delete(app: &App, id: &str) -> Result<Response, ApiError> {
    refreshed(app)
        .files
        .remove(FileApi::OpenAi, id)
        .ok_or_else(|| no_such_file(id))?;
    Ok(json_response(
        &json!({"id": id, "object": "file", "deleted": true}),
    ))
}

fn file_content(app: &App, id: &str) -> Result<Response, ApiError> {
    let entry = refreshed(app)
        .files
        .get(FileApi::OpenAi, id)
        .cloned()
        .ok_or_else(|| no_such_file(id))?;
    let body = match entry.content {
        Content::Stored(b) => Body::from(b),
        Content::Generated(g) => Body::from_stream(g.stream()),
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

async fn batches_create(app: &App, body: Body) -> Result<Response, ApiError> {
    let body = json_body(body, 1024 * 1024).await?;
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid("The request body must be a JSON object."));
    };
    if let Some(k) = obj.keys().find(|k| {
        !matches!(
            k.as_str(),
            "input_file_id"
                | "endpoint"
                | "completion_window"
                | "metadata"
                | "output_expires_after"
        )
    }) {
        return Err(ApiError::invalid(format!(
            "Unrecognized request argument supplied: {k}"
        )));
    }
    let string = |key: &str| -> Result<String, ApiError> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) => Err(ApiError::invalid(format!(
                "Missing required parameter: '{key}'."
            ))
            .param(key)
            .code("missing_required_parameter")),
            Some(_) => Err(ApiError::invalid(format!(
                "Invalid type for '{key}': expected a string."
            ))
            .param(key)
            .code("invalid_type")),
        }
    };
    let input_file_id = string("input_file_id")?;
    let endpoint_str = string("endpoint")?;
    let window = string("completion_window")?;
    let endpoint = match Endpoint::parse(&endpoint_str) {
        Some(e) => e,
        None if ENDPOINTS.contains(&endpoint_str.as_str()) => {
            return Err(ApiError::invalid(format!(
                "The simulator answers batches for /v1/chat/completions and /v1/responses, not {endpoint_str}."
            ))
            .param("endpoint")
            .code("unsupported_value"));
        }
        None => {
            return Err(ApiError::invalid(format!(
                "Invalid value: '{endpoint_str}'. Supported values are: {}.",
                ENDPOINTS.join(", ")
            ))
            .param("endpoint")
            .code("invalid_value"));
        }
    };
    if window != "24h" {
        return Err(ApiError::invalid(format!(
            "Invalid value: '{window}'. Supported values are: '24h'."
        ))
        .param("completion_window")
        .code("invalid_value"));
    }
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m) => {
            convert::check_metadata(m).map_err(|e| ApiError::invalid(e).param("metadata"))?;
            Some(m.clone())
        }
    };
    let output_expiry = match obj.get("output_expires_after") {
        None | Some(Value::Null) => None,
        Some(o) => {
            let anchor_ok = o.get("anchor").and_then(Value::as_str) == Some("created_at");
            match o.get("seconds").and_then(Value::as_i64) {
                Some(s) if anchor_ok && (3600..=2_592_000).contains(&s) => {
                    Some(SignedDuration::from_secs(s))
                }
                _ => {
                    return Err(ApiError::invalid(
                        "Invalid 'output_expires_after': expected {\"anchor\": \"created_at\", \"seconds\": 3600..2592000}.",
                    )
                    .param("output_expires_after")
                    .code("invalid_value"));
                }
            }
        }
    };
    let config = app.config();
    let content = {
        let inner = app.inner();
        let file = inner
            .files
            .get(FileApi::OpenAi, &input_file_id)
            .ok_or_else(|| no_such_file(&input_file_id).param("input_file_id"))?;
        if file.purpose != "batch" {
            return Err(ApiError::invalid(format!(
                "Invalid 'input_file_id': the file's purpose is '{}'; a batch input file must have purpose 'batch'.",
                file.purpose
            ))
            .param("input_file_id")
            .code("invalid_value"));
        }
        match &file.content {
            Content::Stored(b) => b.clone(),
            Content::Generated(_) => Bytes::new(),
        }
    };
    // The file is read now (outside the lock): deleting it later does not affect the batch.
    let parsed = parse_input(&content, endpoint, config.seed, LIMITS);
    drop(content);
    let knobs = CreateKnobs {
        processing: config.processing,
        error_rate: config.error_rate,
        expired_rate: config.expired_rate,
        seed: config.seed,
        shuffle: config.shuffle_results,
    };
    let now = Instant::now();
    let view = {
        let mut inner = app.inner();
        let inner = &mut *inner;
        let seq = inner.openai.next_seq;
        inner.openai.next_seq += 1;
        let (work, model) = match parsed {
            Err(errors) => {
                inner.stats.batches_created += 1;
                (Work::Failed(errors), None)
            }
            Ok(mut p) => {
                let enqueued = inner.openai.enqueued_tokens(&p.model, now);
                match config.enqueued_token_limit {
                    Some(limit) if enqueued.saturating_add(p.tokens) > limit => {
                        inner.stats.batches_created += 1;
                        let error = BatchError {
                            code: "token_limit_exceeded",
                            message: format!(
                                "Enqueued token limit reached for {} in organization org-volley-sim. Limit: {limit} enqueued tokens. Please try again once some in_progress batches have been completed.",
                                p.model
                            ),
                            param: None,
                            line: None,
                        };
                        (Work::Failed(vec![error]), Some(p.model))
                    }
                    _ => {
                        inner.register(&mut p.records, &knobs);
                        let expires = p.records.iter().any(|r| r.fate == Fate::Expired);
                        let data = Arc::new(BatchData {
                            seq,
                            seed: config.seed,
                            shuffle: config.shuffle_results,
                            records: p.records,
                        });
                        (
                            Work::Ok {
                                data,
                                expires,
                                tokens: p.tokens,
                            },
                            Some(p.model),
                        )
                    }
                }
            }
        };
        let mut id = String::from(BATCH_PREFIX);
        push_hex(&mut id, seq, 8);
        push_hex(&mut id, mix2(config.seed, seq ^ 0x6261_7463_6800), 16);
        push_hex(&mut id, mix64(seq ^ 0x0062_6174_6368), 8);
        let mut batch = Batch {
            id,
            endpoint,
            input_file_id,
            metadata,
            model,
            timeline: Timeline::new(now, Timestamp::now(), config.processing),
            work,
            output_expiry,
            finished: None,
        };
        batch.finish(now, &mut inner.files);
        let view = batch.view(now);
        inner.openai.batches.insert(seq, batch);
        view
    };
    Ok(json_response(&render(view)))
}

fn batch_get(app: &App, id: &str) -> Result<Response, ApiError> {
    let now = Instant::now();
    let view = {
        let mut inner = refreshed(app);
        let b = inner.openai.get_mut(id).ok_or_else(|| no_such_batch(id))?;
        b.view(now)
    };
    Ok(json_response(&render(view)))
}

fn batches_list(app: &App, uri: &Uri) -> Result<Response, ApiError> {
    let limit = match query_param(uri, "limit") {
        None => 20,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "Invalid 'limit': expected an integer between 1 and 100, got '{l}'."
                ))
                .param("limit")
                .code("invalid_value")
            })?,
    };
    let after = match query_param(uri, "after") {
        None => None,
        Some(a) => Some(Store::seq_of(&a).ok_or_else(|| {
            ApiError::invalid(format!("Invalid 'after': '{a}' is not a batch id."))
                .param("after")
                .code("invalid_value")
        })?),
    };
    let now = Instant::now();
    let (views, has_more) = {
        let inner = refreshed(app);
        let mut it: Box<dyn Iterator<Item = &Batch>> = match after {
            None => Box::new(inner.openai.batches.values().rev()),
            Some(a) => Box::new(inner.openai.batches.range(..a).rev().map(|(_, b)| b)),
        };
        let views: Vec<_> = it.by_ref().take(limit).map(|b| b.view(now)).collect();
        let more = it.next().is_some();
        (views, more)
    };
    let data: Vec<Value> = views.into_iter().map(render).collect();
    let id_of = |v: Option<&Value>| v.and_then(|b| b.get("id")).cloned();
    Ok(json_response(&json!({
        "object": "list",
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": has_more,
        "data": data,
    })))
}

fn batch_cancel(app: &App, id: &str) -> Result<Response, ApiError> {
    let now = Instant::now();
    let view = {
        let mut inner = refreshed(app);
        let inner = &mut *inner;
        let b = inner.openai.get_mut(id).ok_or_else(|| no_such_batch(id))?;
        match b.status(now) {
            Status::Validating | Status::InProgress => {
                b.timeline.cancel(now, Timestamp::now(), CANCEL_GRACE);
                inner.stats.batches_canceled += 1;
            }
            Status::Cancelling | Status::Cancelled => {}
            other => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "invalid_request_error",
                    format!("Cannot cancel a batch with status '{}'.", other.as_str()),
                ));
            }
        }
        b.view(now)
    };
    Ok(json_response(&render(view)))
}

async fn chat_create(app: &App, body: Body) -> Result<Response, ApiError> {
    let body = json_body(body, JSON_LIMIT).await?;
    let prepared = convert::chat(&body, false).map_err(ApiError::openai_invalid)?;
    let seed = app.config().seed;
    let n = app.inner().next_counter();
    let answer = prepared.answer(seed);
    Ok(json_response(&chat_completion(
        base62_id("chatcmpl-", mix2(n, 0x00ca_fe00)),
        Timestamp::now().as_second(),
        prepared.model(),
        &answer,
        prepared.input_tokens(),
        prepared.choices,
    )))
}

/// `POST /v1/responses/input_tokens` (`client.responses.input_tokens.count`): the input tokens
/// `POST /v1/responses` would bill for the same body, after the same validation.
async fn responses_input_tokens(body: Body) -> Result<Response, ApiError> {
    let body = json_body(body, JSON_LIMIT).await?;
    let prepared = convert::responses_input_tokens(&body).map_err(ApiError::openai_invalid)?;
    Ok(json_response(&json!({
        "object": "response.input_tokens",
        "input_tokens": prepared.input_tokens(),
    })))
}

async fn responses_create(app: &App, body: Body) -> Result<Response, ApiError> {
    let body = json_body(body, JSON_LIMIT).await?;
    let prepared = convert::responses(&body, false).map_err(ApiError::openai_invalid)?;
    let seed = app.config().seed;
    let n = app.inner().next_counter();
    let answer = prepared.answer(seed);
    let text = match body.get("text") {
        Some(t) if t.is_object() => {
            let mut t = t.clone();
            if t.get("format").is_none() {
                t["format"] = json!({"type": "text"});
            }
            t
        }
        _ => json!({"format": {"type": "text"}, "verbosity": "medium"}),
    };
    let metadata = body
        .get("metadata")
        .filter(|m| m.is_object())
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    Ok(json_response(&response_object(
        hex_id("resp_", mix2(n, 0x7265_7370)),
        hex_id("msg_", mix2(n, 0x006d_7367)),
        Timestamp::now().as_second(),
        prepared.model(),
        &answer,
        prepared.input_tokens(),
        prepared.max_tokens,
        text,
        body.get("instructions").cloned().unwrap_or(Value::Null),
        metadata,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, url: &str, model: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"{url}","body":{{"model":"{model}","messages":[{{"role":"user","content":"hi {id}"}}]}}}}"#
        )
    }

    fn file(lines: &[String]) -> Vec<u8> {
        let mut f = lines.join("\n").into_bytes();
        f.push(b'\n');
        f
    }

    const CHAT: &str = "/v1/chat/completions";

    fn errors(bytes: &[u8], limits: Limits) -> Vec<BatchError> {
        parse_input(bytes, Endpoint::Chat, 0, limits).unwrap_err()
    }

    #[test]
    fn a_good_file_becomes_records() {
        let mut lines: Vec<String> = (0..3).map(|i| line(&format!("r{i}"), CHAT, "m")).collect();
        lines.push(
            r#"{"custom_id":"bad","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#
                .into(),
        );
        let p = parse_input(&file(&lines), Endpoint::Chat, 0, LIMITS).unwrap();
        assert_eq!(p.records.len(), 4);
        assert_eq!(p.model, "m");
        assert!(p.tokens > 0);
        assert_eq!(
            p.records[3].fate,
            Fate::Invalid,
            "a bad body is a per-request error"
        );
        assert_eq!(
            p.records[3].invalid.as_ref().unwrap().param.as_deref(),
            Some("messages")
        );
    }

    #[test]
    fn file_problems_fail_the_batch_with_lines() {
        let e = errors(&file(&[line("a", CHAT, "m"), "{not json".into()]), LIMITS);
        assert_eq!(e[0].code, "invalid_json_line");
        assert_eq!(e[0].line, Some(2));
        let e = errors(&file(&[line("a", "/v1/responses", "m")]), LIMITS);
        assert_eq!((e[0].code, e[0].param), ("url_mismatch", Some("url")));
        let e = errors(&file(&[line("a", CHAT, "m"), line("b", CHAT, "n")]), LIMITS);
        assert_eq!((e[0].code, e[0].line), ("model_mismatch", Some(2)));
        let e = errors(&file(&[line("a", CHAT, "m"), line("a", CHAT, "m")]), LIMITS);
        assert_eq!(e[0].code, "duplicate_custom_id");
        let e = errors(
            &file(&[
                r#"{"custom_id":"a","method":"GET","url":"/v1/chat/completions","body":{}}"#.into(),
            ]),
            LIMITS,
        );
        assert_eq!(e[0].param, Some("method"));
        let e = errors(
            &file(&[
                r#"{"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#.into(),
            ]),
            LIMITS,
        );
        assert_eq!(e[0].param, Some("custom_id"));
        assert_eq!(errors(b"\n\n", LIMITS)[0].code, "empty_file");
        let small = Limits {
            max_bytes: 50,
            max_requests: 2,
        };
        let three = file(&[
            line("a", CHAT, "m"),
            line("b", CHAT, "m"),
            line("c", CHAT, "m"),
        ]);
        assert_eq!(errors(&three, small)[0].code, "file_too_large");
        let small = Limits {
            max_bytes: usize::MAX,
            max_requests: 2,
        };
        assert_eq!(errors(&three, small)[0].code, "too_many_tasks");
    }
}
