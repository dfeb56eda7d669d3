//! The one HTTP executor every adapter uses: timeouts, retries with backoff and jitter that
//! honour `retry-after`, error classification that keeps status, request id and raw body, and
//! JSONL streaming of large downloads.
use std::sync::Once;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use volley_core::ProviderError;
use volley_core::retry::RetryPolicy;
use volley_types::{ErrorKind, ProviderKind};

/// Where a provider lives and the key to use there.
#[derive(Clone)]
pub struct Endpoint {
    /// Base URL, without a trailing slash (OpenAI's includes `/v1`).
    pub base_url: String,
    /// The API key; only ever placed in a sensitive header.
    pub api_key: SecretString,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

impl Endpoint {
    /// An endpoint; a trailing slash on `base_url` is dropped.
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        let mut base_url = base_url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        Self { base_url, api_key }
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Whether `url` is on the same scheme, host and port as the base URL: the only place the
    /// key may be sent.
    pub fn same_origin(&self, url: &str) -> bool {
        match (
            reqwest::Url::parse(&self.base_url),
            reqwest::Url::parse(url),
        ) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }

    /// A header carrying the key, marked sensitive so it never shows in debug output.
    pub fn key_header(&self, name: &'static str, prefix: &str) -> (HeaderName, HeaderValue) {
        let mut value = HeaderValue::from_str(&format!("{prefix}{}", self.api_key.expose_secret()))
            .unwrap_or_else(|_| HeaderValue::from_static("invalid-key"));
        value.set_sensitive(true);
        (HeaderName::from_static(name), value)
    }
}

/// A request an adapter built: everything but the IO.
#[derive(Debug)]
pub struct WireRequest {
    /// What volley is doing, for errors (`create batch`).
    pub operation: &'static str,
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Headers, auth included.
    pub headers: HeaderMap,
    /// Body, if any.
    pub body: Option<Bytes>,
    /// Whether repeating the call is harmless. Calls that create something are retried only
    /// when the provider answered with an error, never after a timeout or a dropped connection,
    /// because then the provider may have acted and a retry would pay twice.
    pub idempotent: bool,
}

/// A response body with the headers that matter.
#[derive(Debug)]
pub struct WireResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Turns an error response into a [`ProviderError`]: each provider parses its own envelope.
pub type ErrorParser =
    fn(ProviderKind, &'static str, StatusCode, &HeaderMap, &[u8]) -> ProviderError;

/// The shared HTTP client.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    retry: RetryPolicy,
}

static CRYPTO: Once = Once::new();

/// Installs ring as rustls' crypto provider once (reqwest is built without one, to keep
/// aws-lc out; see docs/decisions/0002-tls-ring.md).
pub fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        // Fails only if the application installed one already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl HttpClient {
    /// A client with volley's timeouts and the given retry policy.
    pub fn new(retry: RetryPolicy) -> Self {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(300))
            .user_agent(concat!("volley/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with rustls and ring");
        Self { client, retry }
    }

    /// Uses a caller-built client (proxies, custom roots).
    pub fn with_client(client: reqwest::Client, retry: RetryPolicy) -> Self {
        Self { client, retry }
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Sends `request`, retrying transient failures; returns the successful response.
    pub async fn send(
        &self,
        provider: ProviderKind,
        request: WireRequest,
        parse_error: ErrorParser,
    ) -> Result<WireResponse, ProviderError> {
        let response = self.send_raw(provider, &request, parse_error).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| {
            transport_error(provider, request.operation, &e, "reading the response")
        })?;
        Ok(WireResponse {
            status,
            headers,
            body,
        })
    }

    /// Sends `request` and returns the body as a stream of non-empty lines (JSONL downloads).
    pub async fn send_lines(
        &self,
        provider: ProviderKind,
        request: WireRequest,
        parse_error: ErrorParser,
    ) -> Result<BoxStream<'static, Result<Bytes, ProviderError>>, ProviderError> {
        let operation = request.operation;
        let response = self.send_raw(provider, &request, parse_error).await?;
        Ok(lines(response.bytes_stream())
            .map(move |line| {
                line.map_err(|e| transport_error(provider, operation, &e, "downloading"))
            })
            .boxed())
    }

    async fn send_raw(
        &self,
        provider: ProviderKind,
        request: &WireRequest,
        parse_error: ErrorParser,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut retry = 0;
        loop {
            let mut builder = self
                .client
                .request(request.method.clone(), &request.url)
                .headers(request.headers.clone());
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let error = match builder.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = response.bytes().await.unwrap_or_default();
                    let mut error =
                        parse_error(provider, request.operation, status, &headers, &body);
                    error.retry_after = error.retry_after.or_else(|| retry_after(&headers));
                    error
                }
                Err(e) => {
                    let error = transport_error(provider, request.operation, &e, "sending");
                    // A call that never connected certainly had no effect; anything later may
                    // have reached the provider.
                    if !request.idempotent && !e.is_connect() {
                        return Err(error);
                    }
                    error
                }
            };
            if !error.is_retryable() || retry >= self.retry.max_retries {
                return Err(error);
            }
            let delay = self.retry.delay(retry, error.retry_after);
            tracing::debug!(%error, ?delay, retry, "retrying");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }
}

fn transport_error(
    provider: ProviderKind,
    operation: &'static str,
    e: &reqwest::Error,
    phase: &str,
) -> ProviderError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Network
    };
    // reqwest's Display includes the URL, which never holds a key (keys go in headers).
    let mut message = format!("{phase}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    ProviderError::transport(provider, operation, kind, message)
}

/// Parses a provider's JSON answer; the error names what was expected (`batch object`), so a
/// protocol mismatch says which call's answer was not understood.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("unexpected {what}: {e}"))
}

/// Reads `retry-after-ms` (milliseconds) or `retry-after` (seconds, or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return (ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds > 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.duration_since(jiff::Timestamp::now());
    Duration::try_from(wait).ok().filter(|d| !d.is_zero())
}

/// The request id a provider put in its response headers.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    ["request-id", "x-request-id"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Error kind from an HTTP status, for providers whose body says less.
pub fn kind_from_status(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        400 | 422 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Authentication,
        403 => ErrorKind::Permission,
        404 => ErrorKind::NotFound,
        408 | 504 => ErrorKind::Timeout,
        413 => ErrorKind::TooLarge,
        429 => ErrorKind::RateLimited,
        529 | 503 => ErrorKind::Overloaded,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::Other,
    }
}

/// Splits a byte stream into lines (`\n`, `\r\n` or `\r`), skipping empty ones.
pub fn lines<S, E>(stream: S) -> impl futures::Stream<Item = Result<Bytes, E>>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
{
    futures::stream::unfold(
        (stream, BytesMut::new(), false),
        |(mut stream, mut buf, mut done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
                    let line = buf.split_to(pos).freeze();
                    let _ = buf.split_to(1);
                    if line.is_empty() {
                        continue;
                    }
                    return Some((Ok(line), (stream, buf, done)));
                }
                if done {
                    if buf.is_empty() {
                        return None;
                    }
                    let line = buf.split().freeze();
                    return Some((Ok(line), (stream, buf, done)));
                }
                match stream.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        done = true;
                        buf.clear();
                        return Some((Err(e), (stream, buf, done)));
                    }
                    None => done = true,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_across_chunks_and_line_endings() {
        let chunks: Vec<Result<Bytes, ()>> = vec![
            Ok(Bytes::from_static(b"{\"a\":1}\r\n{\"b\"")),
            Ok(Bytes::from_static(b":2}\n\n{\"c\":3}\r{\"d\":4}")),
        ];
        let out: Vec<_> = lines(futures::stream::iter(chunks))
            .map(|l| String::from_utf8(l.unwrap().to_vec()).unwrap())
            .collect()
            .await;
        assert_eq!(out, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "{\"d\":4}"]);
    }

    #[test]
    fn reads_retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("0"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn key_never_shows_in_debug() {
        let endpoint = Endpoint::new("http://x/", SecretString::from("sk-secret-123"));
        assert!(!format!("{endpoint:?}").contains("sk-secret"));
        let (_, value) = endpoint.key_header("x-api-key", "");
        assert!(!format!("{value:?}").contains("sk-secret"));
        assert_eq!(endpoint.url("/v1"), "http://x/v1");
    }

    #[test]
    fn same_origin_only() {
        let endpoint = Endpoint::new("http://127.0.0.1:8080", SecretString::from("k"));
        assert!(endpoint.same_origin("http://127.0.0.1:8080/v1/x"));
        assert!(!endpoint.same_origin("http://evil.example/v1/x"));
        assert!(!endpoint.same_origin("https://127.0.0.1:8080/v1/x"));
    }
}
