//! The Gemini surface (provider-apis.md §C), under `/v1beta` and `/v1` with `x-goog-api-key`
//! or `?key=`: batch mode (`:batchGenerateContent`, `batches`), the Files API with the
//! resumable upload protocol, `:generateContent` and `:countTokens`.
//!
//! A batch is a long-running `Operation`: `BATCH_STATE_PENDING` (first tenth of the
//! processing time) → `BATCH_STATE_RUNNING` → `BATCH_STATE_SUCCEEDED`, or
//! `BATCH_STATE_EXPIRED` (no results) when a request's fate is to expire, `BATCH_STATE_FAILED`
//! at the end of validation for an unreadable request file; a cancel ends it at once as
//! `BATCH_STATE_CANCELLED`, with the results of the requests done by then and a `CANCELLED`
//! error for the others. Inline batches carry their responses in the operation (input order);
//! file batches get a generated `files/batch-...` responses file.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::answer::{Answer, generate};
use crate::batch_table::{BatchTable, TableBatch};
use crate::convert::{self, Interner, answer_text, field, gemini_model_known, truncated};
use crate::files::{self, Content, FileApi, FileEntry, Generated, Lines, Upload};
use crate::hash::{base64, mix2, mix64, parse_base36, push_base36, push_base62, sha256};
use crate::http::{ApiError, App, json_response, origin, query_param, read_body};
use crate::lifecycle::Timeline;
use crate::state::{BatchData, CreateKnobs, Fate, Inner, Outcome, Rec};
use crate::wire::rfc3339;

/// Largest request body (an inline batch, a `generateContent` call): 20 MiB.
pub(crate) const REQUEST_LIMIT: usize = 20 * 1024 * 1024;
/// Largest file.
pub(crate) const FILE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;
/// Files are deleted this long after upload (reported as `expirationTime`).
const FILE_TTL: SignedDuration = SignedDuration::from_hours(48);
const CHUNK_GRANULARITY: u64 = 8 * 1024 * 1024;
const LINE_SALT: u64 = 0x6765_6d69_6e69_0001;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "BATCH_STATE_PENDING",
            State::Running => "BATCH_STATE_RUNNING",
            State::Succeeded => "BATCH_STATE_SUCCEEDED",
            State::Failed => "BATCH_STATE_FAILED",
            State::Cancelled => "BATCH_STATE_CANCELLED",
            State::Expired => "BATCH_STATE_EXPIRED",
        }
    }

    fn done(self) -> bool {
        !matches!(self, State::Pending | State::Running)
    }

    /// Whether there are results to report.
    fn has_output(self) -> bool {
        matches!(self, State::Succeeded | State::Cancelled)
    }
}

#[derive(Debug)]
enum Work {
    Ok {
        data: Arc<BatchData>,
        expires: bool,
        tokens: u64,
    },
    Failed(String),
}

#[derive(Debug)]
pub(crate) struct Batch {
    id: String,
    /// Without `models/`.
    model: String,
    display_name: String,
    /// The request file (`files/...`), for file input.
    file_name: Option<String>,
    priority: i64,
    timeline: Timeline,
    work: Work,
    responses_file: Option<String>,
    finished: bool,
}

/// What an inline batch's responses are rendered from (outside the state lock).
type OutputSource = (Arc<BatchData>, Option<f64>);

impl Batch {
    fn state(&self, now: Instant) -> State {
        let t = &self.timeline;
        if t.cancel.is_some() {
            return State::Cancelled;
        }
        if now < t.validated() {
            return State::Pending;
        }
        let expires = match &self.work {
            Work::Failed(_) => return State::Failed,
            Work::Ok { expires, .. } => *expires,
        };
        if now < t.ends {
            State::Running
        } else if expires {
            State::Expired
        } else {
            State::Succeeded
        }
    }

    fn cancel_fraction(&self) -> Option<f64> {
        self.timeline.cancel.map(|c| c.fraction)
    }

    /// Creates the responses file of a finished file batch.
    fn finish(&mut self, now: Instant, files: &mut files::Store) {
        if self.finished || !self.state(now).done() {
            return;
        }
        self.finished = true;
        let (Work::Ok { data, .. }, Some(_), true) =
            (&self.work, &self.file_name, self.state(now).has_output())
        else {
            return;
        };
        let n = u32::try_from(data.records.len()).unwrap_or(u32::MAX);
        let mut order: Vec<u32> = (0..n).collect();
        if data.shuffle {
            fastrand::Rng::with_seed(mix2(data.seed, data.seq ^ LINE_SALT)).shuffle(&mut order);
        }
        let lines = GmLines {
            data: data.clone(),
            order,
            cancel_fraction: self.cancel_fraction(),
        };
        let ended = self.timeline.wall(self.timeline.ends);
        let id = format!("batch-{}", self.id);
        files.add(
            FileApi::Gemini,
            Some(id.clone()),
            format!("responses of batches/{}", self.id),
            "",
            "application/jsonl",
            ended,
            ended.saturating_add(FILE_TTL).ok(),
            Content::Generated(Generated::new(Arc::new(lines))),
            None,
            data.seed,
        );
        self.responses_file = Some(format!("files/{id}"));
    }

    fn stats(&self, state: State, now: Instant) -> Value {
        let Work::Ok { data, .. } = &self.work else {
            return json!({});
        };
        let total = data.records.len() as u64;
        let (mut ok, mut failed) = (0u64, 0u64);
        let pending = match state {
            State::Pending => total,
            State::Expired => total,
            State::Running | State::Succeeded | State::Cancelled => {
                let (progress, fraction) = match state {
                    State::Running => (self.timeline.progress(now), None),
                    State::Cancelled => (1.0, self.cancel_fraction()),
                    _ => (1.0, None),
                };
                let mut done = 0;
                for r in &data.records {
                    if !r.done_by(progress) {
                        continue;
                    }
                    done += 1;
                    match r.outcome(fraction) {
                        Outcome::Succeeded => ok += 1,
                        _ => failed += 1,
                    }
                }
                total - done
            }
            State::Failed => 0,
        };
        let mut s = Map::new();
        for (k, v) in [
            ("requestCount", total),
            ("successfulRequestCount", ok),
            ("failedRequestCount", failed),
            ("pendingRequestCount", pending),
        ] {
            if v > 0 {
                s.insert(k.into(), Value::String(v.to_string()));
            }
        }
        Value::Object(s)
    }

    /// The `Operation`; inline responses are added by [`render`] outside the lock.
    fn view(&self, now: Instant, version: &str) -> (Value, Option<OutputSource>) {
        let state = self.state(now);
        let t = &self.timeline;
        let ended_at = match state {
            State::Failed => Some(t.wall(t.validated())),
            s if s.done() => Some(t.wall(t.ends)),
            _ => None,
        };
        let updated = match state {
            State::Pending => t.created_at,
            State::Running => t.wall(t.validated()),
            _ => ended_at.unwrap_or(t.created_at),
        };
        let name = format!("batches/{}", self.id);
        let mut meta = json!({
            "@type": format!("type.googleapis.com/google.ai.generativelanguage.{version}.GenerateContentBatch"),
            "name": name,
            "model": format!("models/{}", self.model),
            "displayName": self.display_name,
            "createTime": rfc3339(t.created_at),
            "updateTime": rfc3339(updated),
            "batchStats": self.stats(state, now),
            "state": state.as_str(),
        });
        if let Some(end) = ended_at {
            meta["endTime"] = Value::String(rfc3339(end));
        }
        if let Some(f) = &self.file_name {
            meta["inputConfig"] = json!({"fileName": f});
        }
        if self.priority != 0 {
            meta["priority"] = Value::String(self.priority.to_string());
        }
        let mut op = json!({"name": name, "metadata": meta});
        if state.done() {
            op["done"] = Value::Bool(true);
        }
        let mut source = None;
        if state.has_output() {
            let output = match (&self.responses_file, &self.work) {
                (Some(f), _) => Some(json!({"responsesFile": f})),
                (None, Work::Ok { data, .. }) if self.file_name.is_none() => {
                    source = Some((data.clone(), self.cancel_fraction()));
                    Some(json!({"inlinedResponses": {"inlinedResponses": []}}))
                }
                _ => None,
            };
            if let Some(output) = output {
                let mut response = json!({"@type": format!(
                    "type.googleapis.com/google.ai.generativelanguage.{version}.GenerateContentBatchOutput")});
                if let (Some(r), Some(o)) = (response.as_object_mut(), output.as_object()) {
                    r.extend(o.clone());
                }
                op["metadata"]["output"] = output;
                op["response"] = response;
            }
        }
        match (state, &self.work) {
            (State::Failed, Work::Failed(message)) => {
                op["error"] = json!({"code": 3, "message": message});
            }
            (State::Expired, _) => {
                op["error"] = json!({"code": 4,
                    "message": "The batch expired before its requests were processed (simulated)."});
            }
            _ => {}
        }
        (op, source)
    }
}

/// Finishes a [`Batch::view`]: the inline responses of a finished batch, in input order.
fn render((mut op, source): (Value, Option<OutputSource>)) -> Value {
    if let Some((data, fraction)) = source {
        let key = mix2(data.seed, data.seq ^ LINE_SALT);
        let responses: Vec<Value> = data
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut entry = item(r, r.outcome(fraction), mix2(key, i as u64));
                if let Some(meta) = &r.meta
                    && let Ok(v) = serde_json::from_str::<Value>(meta.get())
                {
                    entry["metadata"] = v;
                }
                entry
            })
            .collect();
        let inlined = json!({"inlinedResponses": responses});
        op["metadata"]["output"]["inlinedResponses"] = inlined.clone();
        op["response"]["inlinedResponses"] = inlined;
    }
    op
}

/// `{"response": ...}` or `{"error": ...}` for one request.
fn item(rec: &Rec, outcome: Outcome, key: u64) -> Value {
    match outcome {
        Outcome::Succeeded => {
            let answer = generate(&rec.style, rec.content_hash, u64::from(rec.max_tokens));
            json!({"response": generate_content_response(
                &answer, u64::from(rec.input_tokens), &rec.model, response_id(key))})
        }
        Outcome::Errored => match &rec.invalid {
            Some(invalid) => json!({"error": {"code": 400, "message": invalid.message,
                                              "status": "INVALID_ARGUMENT"}}),
            None => json!({"error": {"code": 500,
                "message": "Internal error encountered (simulated; retrying may succeed).",
                "status": "INTERNAL"}}),
        },
        Outcome::Canceled => json!({"error": {"code": 499,
            "message": "The batch was cancelled before this request was processed.",
            "status": "CANCELLED"}}),
        Outcome::Expired => json!({"error": {"code": 504,
            "message": "The batch expired before this request was processed.",
            "status": "DEADLINE_EXCEEDED"}}),
    }
}

fn response_id(key: u64) -> String {
    let mut s = String::new();
    push_base62(&mut s, mix64(key ^ 0x0072_6573_7000), 11);
    push_base62(&mut s, mix64(key), 11);
    s
}

/// A `GenerateContentResponse`.
pub(crate) fn generate_content_response(
    answer: &Answer,
    prompt_tokens: u64,
    model: &str,
    response_id: String,
) -> Value {
    let output = answer.output_tokens;
    json!({
        "candidates": [{
            "content": {"parts": [{"text": answer_text(answer)}], "role": "model"},
            "finishReason": if truncated(answer) { "MAX_TOKENS" } else { "STOP" },
            "index": 0,
        }],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt_tokens + output,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        },
        "modelVersion": model,
        "responseId": response_id,
    })
}

/// The lines of a responses file: `{key, response | error}`.
#[derive(Debug)]
struct GmLines {
    data: Arc<BatchData>,
    order: Vec<u32>,
    cancel_fraction: Option<f64>,
}

impl Lines for GmLines {
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
        let mut line = item(rec, rec.outcome(self.cancel_fraction), key);
        if !rec.custom_id.is_empty() {
            line["key"] = Value::String(rec.custom_id.to_string());
        }
        let _ = serde_json::to_writer(&mut *out, &line);
        out.push(b'\n');
    }
}

/// Gemini batches.
pub(crate) type Store = BatchTable<Batch>;

impl TableBatch for Batch {
    fn id(&self) -> &str {
        &self.id
    }

    fn seq_of(id: &str) -> Option<u64> {
        parse_base36(id.get(..6)?)
    }

    /// Creates the responses file of a file batch that has finished.
    fn finish(&mut self, now: Instant, files: &mut files::Store) {
        Batch::finish(self, now, files);
    }
}

impl Store {
    fn enqueued_tokens(&self, model: &str, now: Instant) -> u64 {
        self.batches
            .values()
            .filter(|b| b.model == model && !b.state(now).done())
            .map(|b| match &b.work {
                Work::Ok { tokens, .. } => *tokens,
                Work::Failed(_) => 0,
            })
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

fn not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::google(StatusCode::NOT_FOUND, format!("{what} was not found."))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::google(StatusCode::BAD_REQUEST, message)
}

fn model_not_found(model: &str, version: &str, method: &str) -> ApiError {
    ApiError::google(
        StatusCode::NOT_FOUND,
        format!(
            "models/{model} is not found for API version {version}, or is not supported for {method}. Call ListModels to see the list of available models and their supported methods."
        ),
    )
}

async fn json_body(body: Body, limit: usize) -> Result<Value, ApiError> {
    let bytes = read_body(body, limit)
        .await
        .map_err(invalid)?
        .ok_or_else(|| {
            invalid(format!(
                "Request payload size exceeds the limit: {limit} bytes."
            ))
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))
}

/// Answers a Gemini call.
pub(crate) async fn handle(app: App, req: Request) -> Response {
    match route(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn version_of(segment: &str) -> Option<&'static str> {
    match segment {
        "v1" => Some("v1"),
        "v1beta" => Some("v1beta"),
        _ => None,
    }
}

async fn route(app: &App, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let unknown = || {
        ApiError::google(
            StatusCode::NOT_FOUND,
            format!(
                "The requested URL {} {path} was not found on this server.",
                parts.method
            ),
        )
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let origin = origin(app, &parts.headers);
    match (&parts.method, segs.as_slice()) {
        (&Method::POST, ["upload", v, "files"]) => {
            let v = version_of(v).ok_or_else(unknown)?;
            match query_param(&parts.uri, "upload_id") {
                Some(id) => upload_chunk(app, &id, &parts.headers, body, v, &origin).await,
                None => upload_start(app, &parts.headers, body, v, &origin).await,
            }
        }
        (&Method::GET, ["download", v, "files", f]) => {
            version_of(v).ok_or_else(unknown)?;
            let id = f.strip_suffix(":download").ok_or_else(unknown)?;
            download(app, id, &parts.uri)
        }
        (method, [v, rest @ ..]) => {
            let v = version_of(v).ok_or_else(unknown)?;
            match (method, rest) {
                (&Method::POST, ["models", m]) => {
                    let (model, verb) = m.split_once(':').ok_or_else(unknown)?;
                    match verb {
                        "generateContent" => generate_content(app, model, body, v).await,
                        "countTokens" => count_tokens(model, body, v).await,
                        "batchGenerateContent" => batch_create(app, model, body, v).await,
                        _ => Err(unknown()),
                    }
                }
                (&Method::GET, ["batches"]) => batches_list(app, &parts.uri, v),
                (&Method::GET, ["batches", b]) if !b.contains(':') => batch_get(app, b, v),
                (&Method::DELETE, ["batches", b]) if !b.contains(':') => batch_delete(app, b),
                (&Method::POST, ["batches", b]) => match b.split_once(':') {
                    Some((id, "cancel")) => batch_cancel(app, id),
                    _ => Err(unknown()),
                },
                (&Method::GET, ["files"]) => files_list(app, &parts.uri, v, &origin),
                (&Method::GET, ["files", f]) => match f.split_once(':') {
                    None => file_get(app, f, v, &origin),
                    Some((id, "download")) => download(app, id, &parts.uri),
                    Some(_) => Err(unknown()),
                },
                (&Method::DELETE, ["files", f]) if !f.contains(':') => file_delete(app, f),
                _ => Err(unknown()),
            }
        }
        _ => Err(unknown()),
    }
}

fn refreshed(app: &App) -> std::sync::MutexGuard<'_, Inner> {
    let mut inner = app.inner();
    inner.refresh(Instant::now());
    inner
}

fn file_json(f: &FileEntry, version: &str, origin: &str) -> Value {
    let created = rfc3339(f.created_at);
    let mut v = json!({
        "name": format!("files/{}", f.id),
        "mimeType": f.mime_type,
        "sizeBytes": f.content.size().to_string(),
        "createTime": created,
        "updateTime": created,
        "uri": format!("{origin}/{version}/files/{}", f.id),
        "state": "ACTIVE",
        "source": if f.generated() { "GENERATED" } else { "UPLOADED" },
    });
    if !f.name.is_empty() {
        v["displayName"] = Value::String(f.name.clone());
    }
    if let Some(e) = f.expires_at {
        v["expirationTime"] = Value::String(rfc3339(e));
    }
    if let Some(h) = &f.sha256 {
        v["sha256Hash"] = Value::String(h.clone());
    }
    if f.generated() {
        v["downloadUri"] = Value::String(format!(
            "{origin}/download/{version}/files/{}:download?alt=media",
            f.id
        ));
    }
    v
}

/// A page size: `default` when absent, coerced to at most `max`.
fn page_size(uri: &Uri, default: usize, max: usize) -> Result<usize, ApiError> {
    match query_param(uri, "pageSize").or_else(|| query_param(uri, "page_size")) {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n <= 0 => Ok(default),
            Ok(n) => Ok((n as usize).min(max)),
            Err(_) => Err(invalid(format!("Invalid value for pageSize: {s:?}"))),
        },
    }
}

/// `pageToken`: the sequence number of the next page's first item.
fn page_token(uri: &Uri) -> Result<Option<u64>, ApiError> {
    match query_param(uri, "pageToken").or_else(|| query_param(uri, "page_token")) {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => t
            .strip_prefix('p')
            .and_then(parse_base36)
            .map(Some)
            .ok_or_else(|| invalid("Invalid page token.")),
    }
}

fn token_of(seq: u64) -> String {
    let mut s = String::from("p");
    push_base36(&mut s, seq, 6);
    s
}

async fn generate_content(
    app: &App,
    model: &str,
    body: Body,
    version: &str,
) -> Result<Response, ApiError> {
    if !gemini_model_known(model) {
        return Err(model_not_found(model, version, "generateContent"));
    }
    let body = json_body(body, REQUEST_LIMIT).await?;
    let prepared = convert::gemini(&body, model).map_err(|e| invalid(e.message))?;
    let seed = app.config().seed;
    let n = app.inner().next_counter();
    let answer = prepared.answer(seed);
    Ok(json_response(&generate_content_response(
        &answer,
        prepared.input_tokens(),
        model,
        response_id(mix2(n, 0x0067_656e)),
    )))
}

async fn count_tokens(model: &str, body: Body, version: &str) -> Result<Response, ApiError> {
    if !gemini_model_known(model) {
        return Err(model_not_found(model, version, "countTokens"));
    }
    let body = json_body(body, REQUEST_LIMIT).await?;
    if let Some(k) = body
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .find(|k| {
            !matches!(
                convert::camel(k).as_str(),
                "contents" | "generateContentRequest"
            )
        })
    {
        return Err(invalid(format!(
            "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
        )));
    }
    let request = match field(&body, "generateContentRequest") {
        Some(r) => r.clone(),
        None => json!({"contents": field(&body, "contents").cloned().unwrap_or(Value::Null)}),
    };
    let prepared = convert::gemini(&request, model).map_err(|e| invalid(e.message))?;
    let total = prepared.input_tokens();
    Ok(json_response(&json!({
        "totalTokens": total,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
    })))
}

/// The records of a batch: inline requests, or the lines of a request file (`Err` fails the
/// batch).
fn inline_records(requests: &[Value], model: &str, seed: u64) -> Result<(Vec<Rec>, u64), ApiError> {
    let mut interner = Interner::default();
    let model_arc = interner.model(model);
    let mut records = Vec::with_capacity(requests.len());
    let mut tokens = 0;
    for (i, r) in requests.iter().enumerate() {
        let Some(request) = field(r, "request").filter(|v| v.is_object()) else {
            return Err(invalid(format!(
                "* BatchGenerateContentRequest.batch.input_config.requests.requests[{i}].request: request is required\n"
            )));
        };
        let meta = field(r, "metadata").filter(|m| !m.is_null());
        let key = meta
            .and_then(|m| m.get("key"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut rec = match convert::gemini(request, model) {
            Ok(p) => {
                tokens += p.input_tokens();
                p.record(key.into(), model_arc.clone(), seed, &mut interner)
            }
            Err(e) => convert::invalid_record(key.into(), model_arc.clone(), e),
        };
        rec.meta = meta.and_then(|m| RawValue::from_string(m.to_string()).ok());
        records.push(rec);
    }
    Ok((records, tokens))
}

fn file_records(
    bytes: &[u8],
    file: &str,
    model: &str,
    seed: u64,
) -> Result<(Vec<Rec>, u64), String> {
    let mut interner = Interner::default();
    let model_arc = interner.model(model);
    let mut records = Vec::new();
    let mut tokens = 0;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = i + 1;
        let value: Value = serde_json::from_slice(raw)
            .map_err(|e| format!("Invalid JSON on line {line} of {file}: {e}"))?;
        let Some(request) = field(&value, "request").filter(|r| r.is_object()) else {
            return Err(format!(
                "Line {line} of {file} has no `request` object; each line must be {{\"key\": ..., \"request\": GenerateContentRequest}}."
            ));
        };
        let key = field(&value, "key")
            .and_then(Value::as_str)
            .or_else(|| {
                field(&value, "metadata")
                    .and_then(|m| m.get("key"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("");
        let rec = match convert::gemini(request, model) {
            Ok(p) => {
                tokens += p.input_tokens();
                p.record(key.into(), model_arc.clone(), seed, &mut interner)
            }
            Err(e) => convert::invalid_record(key.into(), model_arc.clone(), e),
        };
        records.push(rec);
    }
    if records.is_empty() {
        return Err(format!("The request file {file} contains no requests."));
    }
    Ok((records, tokens))
}

async fn batch_create(
    app: &App,
    model: &str,
    body: Body,
    version: &str,
) -> Result<Response, ApiError> {
    if !gemini_model_known(model) {
        return Err(model_not_found(model, version, "batchGenerateContent"));
    }
    let body = json_body(body, REQUEST_LIMIT).await?;
    let Some(batch) = field(&body, "batch").filter(|b| b.is_object()) else {
        return Err(invalid(
            "* BatchGenerateContentRequest.batch: batch is required\n",
        ));
    };
    let display_name = match field(batch, "displayName") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid("* batch.display_name: must be a string\n")),
    };
    let priority = match field(batch, "priority") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| invalid("* batch.priority: must be an int64\n"))?,
    };
    let Some(input) = field(batch, "inputConfig").filter(|i| i.is_object()) else {
        return Err(invalid(
            "* BatchGenerateContentRequest.batch.input_config: input_config is required\n",
        ));
    };
    let requests = field(input, "requests").filter(|r| !r.is_null());
    let file_name = field(input, "fileName").filter(|f| !f.is_null());
    let config = app.config();
    let (parsed, file_name) = match (requests, file_name) {
        (Some(requests), None) => {
            let list = match field(requests, "requests") {
                Some(Value::Array(l)) if !l.is_empty() => l,
                _ => {
                    return Err(invalid(
                        "* BatchGenerateContentRequest.batch.input_config.requests.requests: at least one request is required\n",
                    ));
                }
            };
            (Ok(inline_records(list, model, config.seed)?), None)
        }
        (None, Some(Value::String(name))) => {
            let id = name.strip_prefix("files/").unwrap_or(name);
            let content = {
                let inner = app.inner();
                let file = inner
                    .files
                    .get(FileApi::Gemini, id)
                    .ok_or_else(|| not_found(format!("File files/{id}")))?;
                match &file.content {
                    Content::Stored(b) => b.clone(),
                    Content::Generated(_) => Bytes::new(),
                }
            };
            let name = format!("files/{id}");
            (
                file_records(&content, &name, model, config.seed),
                Some(name),
            )
        }
        (Some(_), Some(_)) | (None, None) => {
            return Err(invalid(
                "* BatchGenerateContentRequest.batch.input_config: exactly one of requests or file_name must be set\n",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "* batch.input_config.file_name: must be a string\n",
            ));
        }
    };
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
        let work = match parsed {
            Err(message) => {
                inner.stats.batches_created += 1;
                Work::Failed(message)
            }
            Ok((mut records, tokens)) => {
                if let Some(limit) = config.enqueued_token_limit {
                    let enqueued = inner.gemini.enqueued_tokens(model, now);
                    if enqueued.saturating_add(tokens) > limit {
                        return Err(ApiError::google(
                            StatusCode::TOO_MANY_REQUESTS,
                            format!(
                                "Enqueued tokens limit exceeded for models/{model}: {enqueued} tokens are enqueued in active batches, this batch adds {tokens}, the limit is {limit}. Try again once some batches have completed."
                            ),
                        )
                        .details(vec![json!({
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [{
                                "quotaMetric": "generativelanguage.googleapis.com/batch_enqueued_tokens",
                                "quotaId": "BatchEnqueuedTokensPerModel",
                            }]})]));
                    }
                }
                inner.register(&mut records, &knobs);
                let expires = records.iter().any(|r| r.fate == Fate::Expired);
                let seq = inner.gemini.next_seq;
                Work::Ok {
                    data: Arc::new(BatchData {
                        seq,
                        seed: config.seed,
                        shuffle: config.shuffle_results,
                        records,
                    }),
                    expires,
                    tokens,
                }
            }
        };
        let seq = inner.gemini.next_seq;
        inner.gemini.next_seq += 1;
        let mut id = String::new();
        push_base36(&mut id, seq, 6);
        push_base36(&mut id, mix2(config.seed, seq ^ 0x0062_6174_6368), 8);
        let mut batch = Batch {
            id,
            model: model.to_owned(),
            display_name,
            file_name,
            priority,
            timeline: Timeline::new(now, Timestamp::now(), config.processing),
            work,
            responses_file: None,
            finished: false,
        };
        batch.finish(now, &mut inner.files);
        let view = batch.view(now, version);
        inner.gemini.batches.insert(seq, batch);
        view
    };
    Ok(json_response(&render(view)))
}

fn batch_get(app: &App, id: &str, version: &str) -> Result<Response, ApiError> {
    let now = Instant::now();
    let view = {
        let mut inner = refreshed(app);
        let b = inner
            .gemini
            .get_mut(id)
            .ok_or_else(|| not_found(format!("Batch batches/{id}")))?;
        b.view(now, version)
    };
    Ok(json_response(&render(view)))
}

fn batches_list(app: &App, uri: &Uri, version: &str) -> Result<Response, ApiError> {
    let size = page_size(uri, 10, 1000)?;
    let token = page_token(uri)?;
    let now = Instant::now();
    let (views, next) = {
        let inner = refreshed(app);
        let mut it: Box<dyn Iterator<Item = (&u64, &Batch)>> = match token {
            None => Box::new(inner.gemini.batches.iter().rev()),
            Some(t) => Box::new(inner.gemini.batches.range(..=t).rev()),
        };
        let views: Vec<_> = it
            .by_ref()
            .take(size)
            .map(|(_, b)| b.view(now, version))
            .collect();
        let next = it.next().map(|(seq, _)| token_of(*seq));
        (views, next)
    };
    let mut body = Map::new();
    if !views.is_empty() {
        body.insert(
            "operations".into(),
            Value::Array(views.into_iter().map(render).collect()),
        );
    }
    if let Some(next) = next {
        body.insert("nextPageToken".into(), Value::String(next));
    }
    Ok(json_response(&Value::Object(body)))
}

fn batch_cancel(app: &App, id: &str) -> Result<Response, ApiError> {
    let now = Instant::now();
    let mut inner = refreshed(app);
    let inner = &mut *inner;
    let b = inner
        .gemini
        .get_mut(id)
        .ok_or_else(|| not_found(format!("Batch batches/{id}")))?;
    match b.state(now) {
        State::Pending | State::Running => {
            b.timeline
                .cancel(now, Timestamp::now(), std::time::Duration::ZERO);
            b.finish(now, &mut inner.files);
            inner.stats.batches_canceled += 1;
        }
        State::Cancelled => {}
        other => {
            return Err(ApiError::google(
                StatusCode::BAD_REQUEST,
                format!(
                    "Batch batches/{id} cannot be cancelled: it is already in state {}.",
                    other.as_str()
                ),
            )
            .google_status("FAILED_PRECONDITION"));
        }
    }
    Ok(json_response(&json!({})))
}

fn batch_delete(app: &App, id: &str) -> Result<Response, ApiError> {
    let mut inner = app.inner();
    let seq = Store::seq_of(id)
        .filter(|seq| inner.gemini.batches.get(seq).is_some_and(|b| b.id == id))
        .ok_or_else(|| not_found(format!("Batch batches/{id}")))?;
    inner.gemini.batches.remove(&seq);
    Ok(json_response(&json!({})))
}

fn files_list(app: &App, uri: &Uri, version: &str, origin: &str) -> Result<Response, ApiError> {
    let size = page_size(uri, 10, 100)?;
    let token = page_token(uri)?;
    let (page, more) = refreshed(app).files.page(
        FileApi::Gemini,
        false,
        token.map(|t| t.saturating_add(1)),
        size + 1,
        |_| true,
    );
    let _ = more;
    let mut page = page;
    let next = if page.len() > size {
        page.split_off(size).first().map(|f| token_of(f.seq))
    } else {
        None
    };
    let mut body = Map::new();
    if !page.is_empty() {
        body.insert(
            "files".into(),
            Value::Array(page.iter().map(|f| file_json(f, version, origin)).collect()),
        );
    }
    if let Some(next) = next {
        body.insert("nextPageToken".into(), Value::String(next));
    }
    Ok(json_response(&Value::Object(body)))
}

fn file_get(app: &App, id: &str, version: &str, origin: &str) -> Result<Response, ApiError> {
    let entry = refreshed(app)
        .files
        .get(FileApi::Gemini, id)
        .cloned()
        .ok_or_else(|| not_found(format!("File files/{id}")))?;
    Ok(json_response(&file_json(&entry, version, origin)))
}

fn file_delete(app: &App, id: &str) -> Result<Response, ApiError> {
    refreshed(app)
        .files
        .remove(FileApi::Gemini, id)
        .ok_or_else(|| not_found(format!("File files/{id}")))?;
    Ok(json_response(&json!({})))
}

fn download(app: &App, id: &str, uri: &Uri) -> Result<Response, ApiError> {
    if query_param(uri, "alt").as_deref() != Some("media") {
        return Err(invalid(
            "Downloads need alt=media (files/{id}:download?alt=media).",
        ));
    }
    let entry = refreshed(app)
        .files
        .get(FileApi::Gemini, id)
        .cloned()
        .ok_or_else(|| not_found(format!("File files/{id}")))?;
    let Content::Generated(g) = entry.content else {
        return Err(invalid(format!(
            "Only generated files can be downloaded; files/{id} was uploaded."
        )));
    };
    let mime = HeaderValue::from_str(&entry.mime_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        [(header::CONTENT_TYPE, mime)],
        Body::from_stream(g.stream()),
    )
        .into_response())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

async fn upload_start(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    version: &str,
    origin: &str,
) -> Result<Response, ApiError> {
    let protocol = header_str(headers, "x-goog-upload-protocol").unwrap_or("");
    if !protocol.eq_ignore_ascii_case("resumable") {
        return Err(invalid(format!(
            "The simulator supports the resumable upload protocol only (X-Goog-Upload-Protocol: resumable), got {protocol:?}."
        )));
    }
    let command = header_str(headers, "x-goog-upload-command").unwrap_or("");
    if !command.eq_ignore_ascii_case("start") {
        return Err(invalid(format!(
            "A new upload starts with X-Goog-Upload-Command: start, got {command:?}."
        )));
    }
    let body = json_body(body, 1024 * 1024).await?;
    let file = field(&body, "file").cloned().unwrap_or_else(|| json!({}));
    let str_of = |k: &str| field(&file, k).and_then(Value::as_str).map(str::to_owned);
    let mut declared = match header_str(headers, "x-goog-upload-header-content-length") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| invalid("Invalid X-Goog-Upload-Header-Content-Length."))?,
        ),
    };
    if declared.is_none() {
        declared = field(&file, "sizeBytes").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
    }
    if declared.is_some_and(|d| d > FILE_LIMIT) {
        return Err(invalid(format!(
            "The file is larger than the {FILE_LIMIT} byte limit."
        )));
    }
    let mime_type = str_of("mimeType")
        .or_else(|| header_str(headers, "x-goog-upload-header-content-type").map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = match str_of("name") {
        None => None,
        Some(n) => {
            let id = n.strip_prefix("files/").unwrap_or(&n).to_owned();
            let ok = (1..=40).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !id.starts_with('-')
                && !id.ends_with('-');
            if !ok {
                return Err(invalid(format!(
                    "* File.name: {n:?} is not a valid file name: up to 40 lowercase alphanumerics or dashes, not starting or ending with a dash.\n"
                )));
            }
            Some(id)
        }
    };
    let seed = app.config().seed;
    let id = {
        let mut inner = app.inner();
        if let Some(n) = &name
            && inner.files.contains(FileApi::Gemini, n)
        {
            return Err(ApiError::google(
                StatusCode::CONFLICT,
                format!("A file named files/{n} already exists."),
            ));
        }
        inner.files.start_upload(
            Upload {
                display_name: str_of("displayName").unwrap_or_default(),
                mime_type,
                declared,
                name,
                data: Vec::new(),
                finished: None,
            },
            seed,
        )
    };
    let url = format!("{origin}/upload/{version}/files?upload_id={id}&upload_protocol=resumable");
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&url) {
        h.insert("x-goog-upload-url", v.clone());
        h.insert("x-goog-upload-control-url", v);
    }
    h.insert("x-goog-upload-status", HeaderValue::from_static("active"));
    h.insert(
        "x-goog-upload-chunk-granularity",
        HeaderValue::from(CHUNK_GRANULARITY),
    );
    Ok(r)
}

fn upload_reply(status: &'static str, received: u64, body: Option<Value>) -> Response {
    let mut r = match body {
        Some(b) => json_response(&b),
        None => StatusCode::OK.into_response(),
    };
    let h = r.headers_mut();
    h.insert("x-goog-upload-status", HeaderValue::from_static(status));
    h.insert("x-goog-upload-size-received", HeaderValue::from(received));
    r
}

async fn upload_chunk(
    app: &App,
    upload_id: &str,
    headers: &HeaderMap,
    body: Body,
    version: &str,
    origin: &str,
) -> Result<Response, ApiError> {
    let command = header_str(headers, "x-goog-upload-command").unwrap_or("");
    let words: Vec<String> = command
        .split(',')
        .map(|w| w.trim().to_ascii_lowercase())
        .collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    let unknown_session = || not_found(format!("Upload session {upload_id}"));
    let received = {
        let mut inner = app.inner();
        let upload = inner.files.upload(upload_id).ok_or_else(unknown_session)?;
        if let Some(file_id) = upload.finished.clone() {
            // A repeated finalize (a retried last chunk): answer the file again.
            let size = upload.data.len() as u64;
            let entry = inner.files.get(FileApi::Gemini, &file_id).cloned();
            return Ok(match entry {
                Some(f) => upload_reply(
                    "final",
                    f.content.known_size().unwrap_or(size),
                    Some(json!({"file": file_json(&f, version, origin)})),
                ),
                None => upload_reply("final", size, None),
            });
        }
        upload.data.len() as u64
    };
    if has("query") {
        return Ok(upload_reply("active", received, None));
    }
    if has("cancel") {
        app.inner().files.remove_upload(upload_id);
        return Ok(upload_reply("cancelled", received, None));
    }
    if !has("upload") && !has("finalize") {
        return Err(invalid(format!(
            "Unsupported X-Goog-Upload-Command {command:?}: expected upload, finalize, query or cancel."
        )));
    }
    let limit = usize::try_from(FILE_LIMIT.saturating_sub(received)).unwrap_or(usize::MAX);
    let chunk = read_body(body, limit)
        .await
        .map_err(invalid)?
        .ok_or_else(|| {
            invalid(format!(
                "The file is larger than the {FILE_LIMIT} byte limit."
            ))
        })?;
    let offset = match header_str(headers, "x-goog-upload-offset") {
        Some(o) => o
            .parse::<u64>()
            .map_err(|_| invalid("Invalid X-Goog-Upload-Offset."))?,
        None if chunk.is_empty() => received,
        None => return Err(invalid("X-Goog-Upload-Offset is required with data.")),
    };
    let seed = app.config().seed;
    let mut inner = app.inner();
    let inner = &mut *inner;
    let upload = inner.files.upload(upload_id).ok_or_else(unknown_session)?;
    let have = upload.data.len() as u64;
    if offset != have {
        let mut e = invalid(format!(
            "X-Goog-Upload-Offset {offset} does not match the {have} bytes received so far."
        ))
        .into_response();
        e.headers_mut()
            .insert("x-goog-upload-status", HeaderValue::from_static("active"));
        e.headers_mut()
            .insert("x-goog-upload-size-received", HeaderValue::from(have));
        return Ok(e);
    }
    upload.data.extend_from_slice(&chunk);
    let total = upload.data.len() as u64;
    if !has("finalize") {
        return Ok(upload_reply("active", total, None));
    }
    if let Some(d) = upload.declared
        && d != total
    {
        return Err(invalid(format!(
            "The upload was declared as {d} bytes (X-Goog-Upload-Header-Content-Length) but {total} bytes were received."
        )));
    }
    let data = Bytes::from(std::mem::take(&mut upload.data));
    let hash = base64(&sha256(&data));
    let display_name = upload.display_name.clone();
    let mime_type = upload.mime_type.clone();
    let name = upload.name.clone();
    let created = Timestamp::now();
    let entry = inner
        .files
        .add(
            FileApi::Gemini,
            name,
            display_name,
            "",
            &mime_type,
            created,
            created.saturating_add(FILE_TTL).ok(),
            Content::Stored(data),
            Some(hash),
            seed,
        )
        .clone();
    if let Some(upload) = inner.files.upload(upload_id) {
        upload.finished = Some(entry.id.clone());
    }
    inner.stats.files_uploaded += 1;
    Ok(upload_reply(
        "final",
        total,
        Some(json!({"file": file_json(&entry, version, origin)})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_become_records_or_fail_the_batch() {
        let f = b"{\"key\":\"a\",\"request\":{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}}\n\
                  {\"key\":\"b\",\"request\":{\"contents\":[]}}\n";
        let (recs, tokens) = file_records(f, "files/x", "gemini-2.5-flash", 0).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(tokens > 0);
        assert_eq!(&*recs[0].custom_id, "a");
        assert_eq!(recs[1].fate, Fate::Invalid);
        let bad = file_records(b"{\"key\":\"a\"}\n", "files/x", "gemini-2.5-flash", 0);
        assert!(bad.unwrap_err().contains("Line 1"));
        assert!(file_records(b"nope\n", "files/x", "m", 0).is_err());
        assert!(file_records(b"\n", "files/x", "m", 0).is_err());
    }

    #[test]
    fn page_tokens_round_trip() {
        let t = token_of(1234);
        let uri: Uri = format!("/v1beta/files?pageToken={t}").parse().unwrap();
        assert_eq!(page_token(&uri).unwrap(), Some(1234));
        let bad: Uri = "/v1beta/files?pageToken=zz".parse().unwrap();
        assert!(page_token(&bad).is_err());
        let size: Uri = "/v1beta/files?pageSize=500".parse().unwrap();
        assert_eq!(page_size(&size, 10, 100).unwrap(), 100);
    }
}
