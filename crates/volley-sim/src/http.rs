//! The axum application: Anthropic routes, the admin surface and the middleware that counts
//! calls, injects faults, checks headers and renders errors.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::answer::{Style, citation_of, content_hash, generate};
use crate::config::{SimConfig, SimConfigPatch};
use crate::hash::{StableHasher, mix2, opaque_id};
use crate::state::{BatchData, CreateKnobs, Cursor, Fate, Inner, Rec, Refusal, Status};
use crate::tokenizer::request_tokens;
use crate::validate::{Mode, validate};
use crate::wire::{BatchPage, Deleted, ErrorResponse, MessageBatchJson, MessageJson};

/// Largest batch-create body (256 MB).
pub(crate) const BATCH_BODY_LIMIT: usize = 256 * 1024 * 1024;
/// Largest Messages / count_tokens body (32 MB).
pub(crate) const MESSAGES_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Most requests in one batch.
pub(crate) const MAX_BATCH_REQUESTS: usize = 100_000;
const LIST_DEFAULT_LIMIT: usize = 20;
const LIST_MAX_LIMIT: usize = 1000;
/// Size at which a results chunk is flushed to the client.
const RESULTS_CHUNK: usize = 64 * 1024;

/// State shared by the handlers and the [`crate::Simulator`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Mutex<SimConfig>,
    inner: Mutex<Inner>,
    addr: SocketAddr,
    request_counter: AtomicU64,
}

type App = Arc<Shared>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(config: SimConfig, addr: SocketAddr) -> Self {
        Self {
            config: Mutex::new(config),
            inner: Mutex::new(Inner::default()),
            addr,
            request_counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn config(&self) -> SimConfig {
        lock(&self.config).clone()
    }

    /// Replaces the knobs and restarts the fault counters.
    pub(crate) fn set_config(&self, config: SimConfig) {
        *lock(&self.config) = config;
        let mut inner = lock(&self.inner);
        inner.fault_counter = 0;
        inner.server_faults = 0;
    }

    pub(crate) fn stats(&self) -> crate::SimStats {
        lock(&self.inner).stats.clone()
    }

    pub(crate) fn reset(&self) {
        lock(&self.inner).reset();
    }

    fn request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        opaque_id("req_", mix2(n, 0x7265_7175_6573_7400))
    }

    /// Counts the call, injects a fault when due, and checks auth and version headers.
    fn admit(&self, is_v1: bool, headers: &HeaderMap) -> Option<ApiError> {
        let (rate_every, server_every, retry_after, expected_key) = {
            let c = lock(&self.config);
            (
                c.rate_limit_every,
                c.server_error_every,
                c.retry_after,
                c.api_key.clone(),
            )
        };
        {
            let mut inner = lock(&self.inner);
            inner.stats.calls += 1;
            if !is_v1 {
                return None;
            }
            inner.fault_counter += 1;
            let n = inner.fault_counter;
            if rate_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
                inner.stats.faults_injected += 1;
                return Some(ApiError::fault(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "Number of requests has exceeded your rate limit (simulated). Please try again later.",
                    retry_after,
                ));
            }
            if server_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
                inner.stats.faults_injected += 1;
                inner.server_faults += 1;
                return Some(if inner.server_faults % 2 == 1 {
                    ApiError::fault(
                        StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                        "overloaded_error",
                        "Overloaded (simulated)",
                        retry_after,
                    )
                } else {
                    ApiError::fault(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "api_error",
                        "Internal server error (simulated)",
                        retry_after,
                    )
                });
            }
        }
        let header_str = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let key = header_str("x-api-key")
            .filter(|k| !k.is_empty())
            .or_else(|| {
                header_str("authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
            });
        match (key, expected_key) {
            (None, _) => {
                return Some(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "x-api-key header is required",
                ));
            }
            (Some(got), Some(want)) if got != want => {
                return Some(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "invalid x-api-key",
                ));
            }
            _ => {}
        }
        if header_str("anthropic-version").is_none_or(str::is_empty) {
            return Some(ApiError::invalid("anthropic-version: header is required"));
        }
        None
    }
}

/// An error answer; rendered (with the request id) by the middleware.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    fn fault(status: StatusCode, kind: &'static str, message: &str, retry: Duration) -> Self {
        Self {
            retry_after: Some(retry),
            ..Self::new(status, kind, message)
        }
    }

    fn refusal(r: Refusal, id: &str, action: &str) -> Self {
        match r {
            Refusal::NotFound => Self::not_found(format!("message batch {id} not found")),
            Refusal::WrongState(status) => Self::invalid(format!(
                "message batch {id} cannot be {action}: its processing_status is {}",
                status.as_str()
            )),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = self.status.into_response();
        r.extensions_mut().insert(self);
        r
    }
}

fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            format!("serialization failed: {e}"),
        )
        .into_response(),
    }
}

/// Builds the router.
pub(crate) fn router(app: App) -> Router {
    let v1 = Router::new()
        .route("/v1/messages", post(messages_create))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route(
            "/v1/messages/batches",
            post(batches_create)
                .get(batches_list)
                .layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
        )
        .route(
            "/v1/messages/batches/{id}",
            get(batches_retrieve).delete(batches_delete),
        )
        .route("/v1/messages/batches/{id}/cancel", post(batches_cancel))
        .route("/v1/messages/batches/{id}/results", get(batches_results));
    let admin = Router::new()
        .route("/_sim/stats", get(admin_stats))
        .route("/_sim/config", get(admin_config_get).post(admin_config_set))
        .route("/_sim/reset", post(admin_reset));
    v1.merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MESSAGES_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(app.clone(), gate))
        .with_state(app)
}

async fn gate(State(app): State<App>, req: Request, next: Next) -> Response {
    let request_id = app.request_id();
    let path = req.uri().path();
    let admin = path == "/_sim" || path.starts_with("/_sim/");
    let is_v1 = path.starts_with("/v1/");
    let early = if admin {
        None
    } else {
        app.admit(is_v1, req.headers())
    };
    let response = match early {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    finish(response, &request_id)
}

/// Renders an [`ApiError`] body and stamps the request id.
fn finish(response: Response, request_id: &str) -> Response {
    let mut response = match response.extensions().get::<ApiError>().cloned() {
        None => response,
        Some(e) => {
            let (mut parts, _) = response.into_parts();
            let body = ErrorResponse::new(e.kind, &e.message, Some(request_id));
            let body = serde_json::to_vec(&body).unwrap_or_default();
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            if let Some(retry) = e.retry_after {
                let ms = crate::config::duration_ms(retry);
                let secs = ms.div_ceil(1000).max(1);
                parts
                    .headers
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                parts
                    .headers
                    .insert("retry-after-ms", HeaderValue::from(ms));
                parts
                    .headers
                    .insert("x-should-retry", HeaderValue::from_static("true"));
            }
            Response::from_parts(parts, Body::from(body))
        }
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("request-id", v);
    }
    response.headers_mut().insert(
        "anthropic-organization-id",
        HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
    );
    response
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("Not found: {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("Method {method} not allowed for {}", uri.path()),
    )
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
            )
        } else {
            ApiError::invalid(format!("could not read the request body: {rejection}"))
        }
    })
}

fn parse_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body_bytes(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))
}

/// `http://host:port` as the client addressed us (Host header), else the bound address.
fn origin(app: &Shared, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        });
    match host {
        Some(h) => format!("http://{h}"),
        None => format!("http://{}", crate::loopback(app.addr)),
    }
}

fn no_intern(v: &Value) -> Arc<Value> {
    Arc::new(v.clone())
}

// ---------------------------------------------------------------------------------------------
// Messages

async fn messages_create(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = parse_json(body)?;
    validate(&params, Mode::Messages).map_err(ApiError::invalid)?;
    let seed = lock(&app.config).seed;
    let style = Style::of(&params, &mut no_intern);
    let max_tokens = params
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let mut answer = generate(&style, content_hash(seed, &params), max_tokens);
    if let Some(citation) = citation_of(&params) {
        answer.cite(&citation);
    }
    let model = params.get("model").and_then(Value::as_str).unwrap_or("");
    let id = opaque_id("msg_", mix2(lock(&app.inner).next_counter(), 0x006d_7367));
    let message = MessageJson::new(id, model, &answer, request_tokens(&params), "standard");
    Ok(json_response(&message))
}

async fn count_tokens(
    State(_app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = parse_json(body)?;
    validate(&params, Mode::CountTokens).map_err(ApiError::invalid)?;
    Ok(json_response(
        &serde_json::json!({"input_tokens": request_tokens(&params)}),
    ))
}

// ---------------------------------------------------------------------------------------------
// Batches

fn custom_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks the envelope synchronously and prepares the compact per-request records; params
/// problems become `Invalid` records (reported as `errored` results).
fn prepare_batch(body: &[u8], seed: u64) -> Result<Vec<Rec>, ApiError> {
    let top: BTreeMap<String, &RawValue> = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "the request body must be a JSON object with a `requests` list: {e}"
        ))
    })?;
    if let Some(extra) = top.keys().find(|k| *k != "requests") {
        return Err(ApiError::invalid(format!(
            "{extra}: Extra inputs are not permitted"
        )));
    }
    let raw = top
        .get("requests")
        .ok_or_else(|| ApiError::invalid("requests: Field required"))?;
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| ApiError::invalid("requests: Input should be a valid list"))?;
    if items.is_empty() {
        return Err(ApiError::invalid(
            "requests: List should have at least 1 item after validation, not 0",
        ));
    }
    if items.len() > MAX_BATCH_REQUESTS {
        return Err(ApiError::invalid(format!(
            "requests: List should have at most {MAX_BATCH_REQUESTS} items after validation, not {}",
            items.len()
        )));
    }

    let mut seen: HashMap<Box<str>, usize> = HashMap::with_capacity(items.len());
    let mut models: HashMap<String, Arc<str>> = HashMap::new();
    let mut schemas: HashMap<u64, Vec<Arc<Value>>> = HashMap::new();
    let mut intern_schema = |v: &Value| -> Arc<Value> {
        let mut h = StableHasher::new(0);
        h.value(v);
        let bucket = schemas.entry(h.finish()).or_default();
        if let Some(found) = bucket.iter().find(|s| ***s == *v) {
            return found.clone();
        }
        let arc = Arc::new(v.clone());
        bucket.push(arc.clone());
        arc
    };
    let mut records = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let fields: BTreeMap<String, &RawValue> =
            serde_json::from_str(item.get()).map_err(|_| {
                ApiError::invalid(format!("requests.{i}: Input should be a valid dictionary"))
            })?;
        if let Some(extra) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "custom_id" | "params"))
        {
            return Err(ApiError::invalid(format!(
                "requests.{i}.{extra}: Extra inputs are not permitted"
            )));
        }
        let custom_id: String = match fields.get("custom_id") {
            None => {
                return Err(ApiError::invalid(format!(
                    "requests.{i}.custom_id: Field required"
                )));
            }
            Some(raw) => serde_json::from_str(raw.get()).map_err(|_| {
                ApiError::invalid(format!(
                    "requests.{i}.custom_id: Input should be a valid string"
                ))
            })?,
        };
        if !custom_id_ok(&custom_id) {
            return Err(ApiError::invalid(format!(
                "requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$' (got {custom_id:?})"
            )));
        }
        if let Some(first) = seen.get(custom_id.as_str()) {
            return Err(ApiError::invalid(format!(
                "requests.{i}.custom_id: duplicate custom_id {custom_id:?} (also used by requests.{first}); custom_id must be unique within a batch"
            )));
        }
        let params: Value = match fields.get("params") {
            None => {
                return Err(ApiError::invalid(format!(
                    "requests.{i}.params: Field required"
                )));
            }
            Some(raw) => serde_json::from_str(raw.get())
                .map_err(|e| ApiError::invalid(format!("requests.{i}.params: {e}")))?,
        };
        if !params.is_object() {
            return Err(ApiError::invalid(format!(
                "requests.{i}.params: Input should be a valid dictionary"
            )));
        }
        let model_name = params.get("model").and_then(Value::as_str).unwrap_or("");
        let model = match models.get(model_name) {
            Some(m) => m.clone(),
            None => {
                let m: Arc<str> = Arc::from(model_name);
                models.insert(model_name.to_owned(), m.clone());
                m
            }
        };
        let custom_id: Box<str> = custom_id.into_boxed_str();
        seen.insert(custom_id.clone(), i);
        let rec = match validate(&params, Mode::Batch) {
            Err(message) => Rec {
                custom_id,
                model,
                style: Style::Sentence,
                invalid: Some(message.into_boxed_str()),
                citation: None,
                content_hash: 0,
                fate_hash: 0,
                input_tokens: 0,
                max_tokens: 0,
                fate: Fate::Invalid,
            },
            Ok(()) => Rec {
                custom_id,
                model,
                style: Style::of(&params, &mut intern_schema),
                invalid: None,
                citation: citation_of(&params).map(Box::new),
                content_hash: content_hash(seed, &params),
                fate_hash: 0,
                input_tokens: u32::try_from(request_tokens(&params)).unwrap_or(u32::MAX),
                max_tokens: params
                    .get("max_tokens")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(u32::MAX),
                fate: Fate::Succeed,
            },
        };
        records.push(rec);
    }
    Ok(records)
}

async fn batches_create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(body)?;
    let config = app.config();
    let records = prepare_batch(&bytes, config.seed)?;
    drop(bytes);
    let knobs = CreateKnobs {
        processing: config.processing,
        error_rate: config.error_rate,
        expired_rate: config.expired_rate,
        seed: config.seed,
        shuffle: config.shuffle_results,
    };
    let view = lock(&app.inner).create(records, &knobs, Instant::now(), Timestamp::now());
    Ok(json_response(&MessageBatchJson::new(
        &view,
        &origin(&app, &headers),
    )))
}

async fn batches_retrieve(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = lock(&app.inner)
        .get(&id, Instant::now())
        .map(|b| b.view())
        .map_err(|r| ApiError::refusal(r, &id, "read"))?;
    Ok(json_response(&MessageBatchJson::new(
        &view,
        &origin(&app, &headers),
    )))
}

async fn batches_list(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))?;
    let limit = match q.get("limit") {
        None => LIST_DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=LIST_MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "limit: Input should be an integer between 1 and {LIST_MAX_LIMIT}, got {l:?}"
                ))
            })?,
    };
    let cursor_seq = |name: &str, id: &str| {
        Inner::cursor_seq(id)
            .ok_or_else(|| ApiError::invalid(format!("{name}: invalid message batch id {id:?}")))
    };
    let cursor = match (q.get("after_id"), q.get("before_id")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "after_id and before_id cannot both be given",
            ));
        }
        (Some(a), None) => Cursor::After(cursor_seq("after_id", a)?),
        (None, Some(b)) => Cursor::Before(cursor_seq("before_id", b)?),
        (None, None) => Cursor::First,
    };
    let page = lock(&app.inner).list(cursor, limit, Instant::now());
    let origin = origin(&app, &headers);
    let body = BatchPage {
        first_id: page.data.first().map(|b| b.id.clone()),
        last_id: page.data.last().map(|b| b.id.clone()),
        has_more: page.has_more,
        data: page
            .data
            .iter()
            .map(|v| MessageBatchJson::new(v, &origin))
            .collect(),
    };
    Ok(json_response(&body))
}

async fn batches_cancel(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = lock(&app.inner)
        .cancel(&id, Instant::now(), Timestamp::now())
        .map_err(|r| ApiError::refusal(r, &id, "canceled"))?;
    Ok(json_response(&MessageBatchJson::new(
        &view,
        &origin(&app, &headers),
    )))
}

async fn batches_delete(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = lock(&app.inner)
        .delete(&id, Instant::now())
        .map_err(|r| ApiError::refusal(r, &id, "deleted"))?;
    Ok(json_response(&Deleted {
        id,
        kind: "message_batch_deleted",
    }))
}

async fn batches_results(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (data, fraction) = {
        let mut inner = lock(&app.inner);
        let batch = inner
            .get(&id, Instant::now())
            .map_err(|r| ApiError::refusal(r, &id, "read"))?;
        if batch.status() != Status::Ended {
            return Err(ApiError::invalid(format!(
                "message batch {id} has not finished processing (processing_status is {}); results are available once it has ended",
                batch.status().as_str()
            )));
        }
        (batch.data.clone(), batch.cancel_fraction())
    };
    let body = Body::from_stream(results_stream(data, fraction));
    Ok(([(header::CONTENT_TYPE, "application/x-jsonl")], body).into_response())
}

/// The results JSONL, generated chunk by chunk from the compact records.
fn results_stream(
    data: Arc<BatchData>,
    cancel_fraction: Option<f64>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let n = u32::try_from(data.records.len()).unwrap_or(u32::MAX);
    let mut order: Vec<u32> = (0..n).collect();
    if data.shuffle {
        fastrand::Rng::with_seed(mix2(data.seed, data.seq)).shuffle(&mut order);
    }
    futures::stream::unfold(
        (data, order, 0usize),
        move |(data, order, mut pos)| async move {
            if pos >= order.len() {
                return None;
            }
            let mut buf = Vec::with_capacity(RESULTS_CHUNK + 4096);
            let batch_key = mix2(data.seed, data.seq);
            while pos < order.len() && buf.len() < RESULTS_CHUNK {
                let index = order[pos] as usize;
                let rec = &data.records[index];
                crate::wire::write_result_line(&mut buf, rec, rec.outcome(cancel_fraction), || {
                    opaque_id("msg_", mix2(batch_key, index as u64))
                });
                pos += 1;
            }
            Some((Ok(Bytes::from(buf)), (data, order, pos)))
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Admin

async fn admin_stats(State(app): State<App>) -> Response {
    json_response(&app.stats())
}

async fn admin_config_get(State(app): State<App>) -> Response {
    json_response(&app.config().to_patch())
}

async fn admin_config_set(
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(body)?;
    let patch: SimConfigPatch = if bytes.iter().all(u8::is_ascii_whitespace) {
        SimConfigPatch::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("invalid config patch: {e}")))?
    };
    let mut config = app.config();
    config.apply(&patch);
    config.check().map_err(ApiError::invalid)?;
    app.set_config(config.clone());
    Ok(json_response(&config.to_patch()))
}

async fn admin_reset(State(app): State<App>) -> Response {
    app.reset();
    json_response(&serde_json::json!({"reset": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_id_rules() {
        assert!(custom_id_ok("a"));
        assert!(custom_id_ok("line-001_X"));
        assert!(custom_id_ok(&"a".repeat(64)));
        assert!(!custom_id_ok(&"a".repeat(65)));
        assert!(!custom_id_ok(""));
        assert!(!custom_id_ok("has space"));
        assert!(!custom_id_ok("dot.ted"));
        assert!(!custom_id_ok("ünï"));
    }

    #[test]
    fn envelope_errors_name_the_index() {
        let e = prepare_batch(br#"{"requests": []}"#, 0).unwrap_err();
        assert!(e.message.starts_with("requests:"), "{}", e.message);
        let e = prepare_batch(br#"{"requests": [{"params": {}}], "x": 1}"#, 0).unwrap_err();
        assert_eq!(e.message, "x: Extra inputs are not permitted");
        let e = prepare_batch(
            br#"{"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]}"#,
            0,
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("requests.1.custom_id: duplicate"),
            "{}",
            e.message
        );
        let e =
            prepare_batch(br#"{"requests": [{"custom_id": "a b", "params": {}}]}"#, 0).unwrap_err();
        assert!(
            e.message.starts_with("requests.0.custom_id"),
            "{}",
            e.message
        );
        let recs = prepare_batch(
            br#"{"requests": [{"custom_id": "a", "params": {"model": "m"}}]}"#,
            0,
        )
        .unwrap();
        assert_eq!(recs[0].fate, Fate::Invalid);
        assert_eq!(
            recs[0].invalid.as_deref(),
            Some("max_tokens: Field required")
        );
    }
}
