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
use crate::state::{BatchData, CreateKnobs, Cursor, Fate, Inner, Invalid, Rec, Refusal, Status};
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

pub(crate) type App = Arc<Shared>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Which API a call speaks, decided from its path and credentials (OpenAI and Gemini share
/// `/v1/batches` and `/v1/files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Anthropic,
    OpenAi,
    Gemini,
}

impl Flavor {
    /// - `/v1beta/...`, `/upload/...`, `/download/...`: Gemini;
    /// - `/v1/messages...`: Anthropic;
    /// - a Gemini key (`x-goog-api-key`, `?key=`): Gemini; an Anthropic key or version header
    ///   (`x-api-key`, `anthropic-version`): Anthropic;
    /// - a `name:verb` last segment (`models/m:generateContent`, `batches/b:cancel`): Gemini;
    /// - anything else (a Bearer token, or no credential at all): OpenAI.
    pub(crate) fn of(uri: &Uri, headers: &HeaderMap) -> Flavor {
        let path = uri.path();
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        if under("/v1beta") || under("/upload") || under("/download") {
            return Flavor::Gemini;
        }
        if under("/v1/messages") {
            return Flavor::Anthropic;
        }
        if headers.contains_key("x-goog-api-key") || query_param(uri, "key").is_some() {
            return Flavor::Gemini;
        }
        if headers.contains_key("x-api-key") || headers.contains_key("anthropic-version") {
            return Flavor::Anthropic;
        }
        if path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
        {
            return Flavor::Gemini;
        }
        Flavor::OpenAi
    }
}

/// The first value of a query parameter, percent-decoded.
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if bytes.len() >= i + 3
                && s.is_char_boundary(i + 3)
                && u8::from_str_radix(&s[i + 1..i + 3], 16).is_ok() =>
            {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'%'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

    /// The state, locked. Keep the guard short: heavy work (answers, file contents) goes
    /// after it is dropped.
    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Replaces the knobs and restarts the fault counters.
    pub(crate) fn set_config(&self, config: SimConfig) {
        *lock(&self.config) = config;
        let mut inner = lock(&self.inner);
        inner.fault_counter = 0;
        inner.server_faults = 0;
    }

    pub(crate) fn stats(&self) -> crate::SimStats {
        let mut inner = lock(&self.inner);
        // Finished batches' result files count as held even before anyone asked for them.
        inner.refresh(Instant::now());
        let mut stats = inner.stats.clone();
        stats.files_stored = inner.files.len() as u64;
        stats
    }

    /// Every OpenAI and Gemini file held (after bringing batches up to date, so finished
    /// batches' result files are there).
    pub(crate) fn files(&self) -> Vec<crate::SimFile> {
        let entries = {
            let mut inner = lock(&self.inner);
            inner.refresh(Instant::now());
            inner.files.all()
        };
        entries
            .into_iter()
            .map(|f| crate::SimFile {
                api: f.api,
                id: f.api_id(),
                name: f.name.clone(),
                purpose: f.purpose.clone(),
                bytes: f.content.size(),
                generated: f.generated(),
            })
            .collect()
    }

    pub(crate) fn reset(&self) {
        lock(&self.inner).reset();
    }

    pub(crate) fn request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        opaque_id("req_", mix2(n, 0x7265_7175_6573_7400))
    }

    /// Counts the call, injects a fault when due, and checks the credentials of `flavor`.
    fn admit(&self, flavor: Flavor, uri: &Uri, headers: &HeaderMap) -> Option<ApiError> {
        let (rate_every, server_every, retry_after, expected_key) = {
            let c = lock(&self.config);
            (
                c.rate_limit_every,
                c.server_error_every,
                c.retry_after,
                c.api_key.clone(),
            )
        };
        let path = uri.path();
        let is_api = ["/v1/", "/v1beta/", "/upload/", "/download/"]
            .iter()
            .any(|p| path.starts_with(p));
        {
            let mut inner = lock(&self.inner);
            inner.stats.calls += 1;
            if !is_api {
                return None;
            }
            inner.fault_counter += 1;
            let n = inner.fault_counter;
            if rate_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
                inner.stats.faults_injected += 1;
                return Some(ApiError::rate_limited(flavor, retry_after));
            }
            if server_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
                inner.stats.faults_injected += 1;
                inner.server_faults += 1;
                return Some(ApiError::server_fault(
                    flavor,
                    inner.server_faults % 2 == 1,
                    retry_after,
                ));
            }
        }
        let header_str = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let bearer = || {
            header_str("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|k| !k.is_empty())
        };
        match flavor {
            Flavor::Anthropic => {
                let key = header_str("x-api-key")
                    .filter(|k| !k.is_empty())
                    .or_else(bearer);
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
            Flavor::OpenAi => match (bearer(), expected_key) {
                (None, _) => Some(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )),
                (Some(got), Some(want)) if got != want => Some(
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_request_error",
                        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                    )
                    .code("invalid_api_key"),
                ),
                _ => None,
            },
            Flavor::Gemini => {
                // Resumable upload chunks carry no key: the session id is the credential.
                if path.starts_with("/upload/") && query_param(uri, "upload_id").is_some() {
                    return None;
                }
                let key = header_str("x-goog-api-key")
                    .map(str::to_owned)
                    .or_else(|| query_param(uri, "key"))
                    .filter(|k| !k.is_empty());
                match (key, expected_key) {
                    (None, _) => Some(ApiError::google(
                        StatusCode::FORBIDDEN,
                        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                    )),
                    (Some(got), Some(want)) if got != want => {
                        let message = "API key not valid. Please pass a valid API key.";
                        Some(ApiError::google(StatusCode::BAD_REQUEST, message).details(vec![
                            serde_json::json!({
                                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": "API_KEY_INVALID",
                                "domain": "googleapis.com",
                                "metadata": {"service": "generativelanguage.googleapis.com"}}),
                            serde_json::json!({
                                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                                "locale": "en-US",
                                "message": message}),
                        ]))
                    }
                    _ => None,
                }
            }
        }
    }
}

/// An error answer; rendered (with the request id) by the middleware in the calling API's
/// style: Anthropic `{type: "error", error: {type, message}}`, OpenAI `{error: {message,
/// type, param, code}}`, Gemini `{error: {code, message, status, details}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    /// Anthropic or OpenAI error `type`.
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
    /// OpenAI `param` and `code`, Gemini status and `details` (boxed: most errors have none).
    pub(crate) extra: Option<Box<Extra>>,
}

/// The rarely set parts of an [`ApiError`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    /// OpenAI `param`.
    pub(crate) param: Option<String>,
    /// OpenAI `code`.
    pub(crate) code: Option<&'static str>,
    /// Gemini canonical status, when not the usual one for the HTTP status.
    pub(crate) google_status: Option<&'static str>,
    /// Gemini `details`.
    pub(crate) details: Vec<Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            extra: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    /// A Gemini error; the canonical status follows from the HTTP status.
    pub(crate) fn google(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "", message)
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    pub(crate) fn param(mut self, param: impl Into<String>) -> Self {
        self.extra_mut().param = Some(param.into());
        self
    }

    pub(crate) fn code(mut self, code: &'static str) -> Self {
        self.extra_mut().code = Some(code);
        self
    }

    pub(crate) fn google_status(mut self, status: &'static str) -> Self {
        self.extra_mut().google_status = Some(status);
        self
    }

    pub(crate) fn details(mut self, details: Vec<Value>) -> Self {
        self.extra_mut().details = details;
        self
    }

    /// An OpenAI 400 from a validation failure.
    pub(crate) fn openai_invalid(invalid: crate::state::Invalid) -> Self {
        Self {
            extra: Some(Box::new(Extra {
                param: invalid.param,
                code: invalid.code,
                ..Extra::default()
            })),
            ..Self::invalid(invalid.message)
        }
    }

    fn rate_limited(flavor: Flavor, retry: Duration) -> Self {
        let e = match flavor {
            Flavor::Anthropic => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit (simulated). Please try again later.",
            ),
            Flavor::OpenAi => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                format!(
                    "Rate limit reached for requests (simulated). Please try again in {}.",
                    protobuf_duration(retry)
                ),
            )
            .code("rate_limit_exceeded"),
            Flavor::Gemini => Self::google(
                StatusCode::TOO_MANY_REQUESTS,
                "Resource has been exhausted (e.g. check quota). (simulated)",
            )
            .details(vec![
                serde_json::json!({
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                }]}),
                serde_json::json!({
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": protobuf_duration(retry)}),
            ]),
        };
        Self {
            retry_after: Some(retry),
            ..e
        }
    }

    fn server_fault(flavor: Flavor, overloaded: bool, retry: Duration) -> Self {
        let e = match (flavor, overloaded) {
            (Flavor::Anthropic, true) => Self::new(
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "overloaded_error",
                "Overloaded (simulated)",
            ),
            (Flavor::Anthropic, false) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal server error (simulated)",
            ),
            (Flavor::OpenAi, true) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "The engine is currently overloaded, please try again later. (simulated)",
            ),
            (Flavor::OpenAi, false) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server had an error while processing your request. Sorry about that! (simulated)",
            ),
            (Flavor::Gemini, true) => Self::google(
                StatusCode::SERVICE_UNAVAILABLE,
                "The model is overloaded. Please try again later. (simulated)",
            ),
            (Flavor::Gemini, false) => Self::google(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting (simulated)",
            ),
        };
        Self {
            retry_after: Some(retry),
            ..e
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

/// A protobuf `Duration` in JSON: `"1s"`, `"0.300s"` (0, 3, 6 or 9 fractional digits).
pub(crate) fn protobuf_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{secs}s")
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{secs}.{:03}s", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{secs}.{:06}s", nanos / 1_000)
    } else {
        format!("{secs}.{nanos:09}s")
    }
}

/// The canonical status name Google uses for an HTTP status.
pub(crate) fn google_status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        413 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

pub(crate) fn json_response<T: Serialize>(value: &T) -> Response {
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
        .route("/_sim/files", get(admin_files))
        .route("/_sim/config", get(admin_config_get).post(admin_config_set))
        .route("/_sim/reset", post(admin_reset));
    v1.merge(admin)
        .fallback(dispatch)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MESSAGES_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(app.clone(), gate))
        .with_state(app)
}

async fn gate(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let request_id = app.request_id();
    let path = req.uri().path();
    let admin = path == "/_sim" || path.starts_with("/_sim/");
    let flavor = if admin {
        Flavor::Anthropic
    } else {
        Flavor::of(req.uri(), req.headers())
    };
    req.extensions_mut().insert(flavor);
    let early = if admin {
        None
    } else {
        app.admit(flavor, req.uri(), req.headers())
    };
    let response = match early {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    finish(response, &request_id, flavor)
}

/// Renders an [`ApiError`] body in the API's style and stamps the request id.
fn finish(response: Response, request_id: &str, flavor: Flavor) -> Response {
    let mut response = match response.extensions().get::<ApiError>().cloned() {
        None => response,
        Some(e) => {
            let (mut parts, _) = response.into_parts();
            let x = e.extra.as_deref().cloned().unwrap_or_default();
            let body = match flavor {
                Flavor::Anthropic => {
                    serde_json::to_vec(&ErrorResponse::new(e.kind, &e.message, Some(request_id)))
                }
                Flavor::OpenAi => serde_json::to_vec(&serde_json::json!({"error": {
                    "message": e.message, "type": e.kind, "param": x.param, "code": x.code}})),
                Flavor::Gemini => {
                    let mut error = serde_json::json!({"code": e.status.as_u16(),
                        "message": e.message,
                        "status": x.google_status.unwrap_or_else(|| google_status_name(e.status))});
                    if !x.details.is_empty() {
                        error["details"] = Value::Array(x.details);
                    }
                    serde_json::to_vec(&serde_json::json!({ "error": error }))
                }
            }
            .unwrap_or_default();
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
                if flavor != Flavor::Gemini {
                    parts
                        .headers
                        .insert("retry-after-ms", HeaderValue::from(ms));
                    parts
                        .headers
                        .insert("x-should-retry", HeaderValue::from_static("true"));
                }
            }
            Response::from_parts(parts, Body::from(body))
        }
    };
    let headers = response.headers_mut();
    match flavor {
        Flavor::Anthropic => {
            if let Ok(v) = HeaderValue::from_str(request_id) {
                headers.insert("request-id", v);
            }
            headers.insert(
                "anthropic-organization-id",
                HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
            );
        }
        Flavor::OpenAi => {
            if let Ok(v) = HeaderValue::from_str(request_id) {
                headers.insert("x-request-id", v);
            }
            headers.insert("openai-version", HeaderValue::from_static("2020-10-01"));
            headers.insert(
                "openai-organization",
                HeaderValue::from_static("volley-sim"),
            );
            headers.insert("openai-processing-ms", HeaderValue::from_static("1"));
        }
        Flavor::Gemini => {}
    }
    response
}

/// Everything that is not an Anthropic or admin route: OpenAI and Gemini.
async fn dispatch(State(app): State<App>, req: Request) -> Response {
    let flavor = req
        .extensions()
        .get::<Flavor>()
        .copied()
        .unwrap_or(Flavor::Anthropic);
    match flavor {
        Flavor::OpenAi => crate::openai::handle(app, req).await,
        Flavor::Gemini => crate::gemini::handle(app, req).await,
        Flavor::Anthropic => {
            ApiError::not_found(format!("Not found: {} {}", req.method(), req.uri().path()))
                .into_response()
        }
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("Method {method} not allowed for {}", uri.path()),
    )
}

/// Reads a body up to `limit` bytes; `None` when it is larger.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Option<Bytes>, String> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("could not read the request body: {e}"))?;
        let have = first.as_ref().map_or(0, Bytes::len) + buf.len();
        if have + chunk.len() > limit {
            return Ok(None);
        }
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            None => buf.extend_from_slice(&chunk),
            Some(f) => {
                buf.reserve(f.len() + chunk.len());
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(Some(match first {
        Some(f) => f,
        None => Bytes::from(buf),
    }))
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
pub(crate) fn origin(app: &Shared, headers: &HeaderMap) -> String {
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
                invalid: Some(Box::new(Invalid::new(message))),
                meta: None,
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
                meta: None,
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
    let view = {
        let mut inner = lock(&app.inner);
        let view = inner
            .cancel(&id, Instant::now(), Timestamp::now())
            .map_err(|r| ApiError::refusal(r, &id, "canceled"))?;
        inner.stats.batches_canceled += 1;
        view
    };
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

async fn admin_files(State(app): State<App>) -> Response {
    json_response(&serde_json::json!({ "files": app.files() }))
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
            recs[0].invalid.as_ref().map(|i| i.message.as_str()),
            Some("max_tokens: Field required")
        );
    }
}
