//! Anthropic endpoint calls, through the shared executor.
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use volley_core::ProviderError;
use volley_core::provider::{
    BatchProvider, RemoteBatch, ResultStream, Submission, SubmissionHint, SubmissionItem,
};
use volley_types::{ErrorKind, ProviderKind, Request};

use super::{API_VERSION, convert};
use crate::http::{Endpoint, HttpClient, WireRequest};

const KIND: ProviderKind = ProviderKind::Anthropic;
/// How far before the recorded intent a batch may be dated and still be ours (clock skew).
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// The Anthropic Message Batches API.
#[derive(Clone)]
pub struct AnthropicProvider {
    endpoint: Endpoint,
    http: HttpClient,
}

impl AnthropicProvider {
    /// A provider at `endpoint` using `http`.
    pub fn new(endpoint: Endpoint, http: HttpClient) -> Self {
        Self { endpoint, http }
    }

    fn request(&self, operation: &'static str, method: Method, url: String) -> WireRequest {
        let mut headers = HeaderMap::new();
        let (name, value) = self.endpoint.key_header("x-api-key", "");
        headers.insert(name, value);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        WireRequest {
            operation,
            idempotent: method == Method::GET,
            method,
            url,
            headers,
            body: None,
        }
    }

    async fn call(&self, request: WireRequest) -> Result<Bytes, ProviderError> {
        let operation = request.operation;
        let response = self.http.send(KIND, request, convert::parse_error).await?;
        if response.body.is_empty() {
            return Err(ProviderError::transport(
                KIND,
                operation,
                ErrorKind::Protocol,
                "empty response",
            ));
        }
        Ok(response.body)
    }

    async fn batch_call(&self, request: WireRequest) -> Result<RemoteBatch, ProviderError> {
        let operation = request.operation;
        let body = self.call(request).await?;
        convert::parse_batch(&body)
            .map(convert::remote_batch)
            .map_err(|e| protocol(operation, e))
    }

    /// Deletes an ended batch (used by `volley cleanup`).
    pub async fn delete(&self, remote_id: &str) -> Result<(), ProviderError> {
        let url = self
            .endpoint
            .url(&format!("/v1/messages/batches/{remote_id}"));
        let mut request = self.request("delete batch", Method::DELETE, url);
        request.idempotent = true;
        self.call(request).await.map(drop)
    }
}

fn protocol(operation: &'static str, message: String) -> ProviderError {
    ProviderError::transport(KIND, operation, ErrorKind::Protocol, message)
}

#[async_trait]
impl BatchProvider for AnthropicProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    fn wire_size(&self, item: &SubmissionItem) -> u64 {
        convert::wire_size(item)
    }

    async fn submit(&self, submission: Submission<'_>) -> Result<RemoteBatch, ProviderError> {
        let url = self.endpoint.url("/v1/messages/batches");
        let mut request = self.request("create batch", Method::POST, url);
        request
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = convert::create_batch_body(&submission.items);
        drop(submission);
        request.body = Some(body.into());
        self.batch_call(request).await
    }

    async fn find_submitted(
        &self,
        hint: SubmissionHint<'_>,
    ) -> Result<Option<RemoteBatch>, ProviderError> {
        // Anthropic batches carry no tag of ours, so a lost create is recognised by when it was
        // made and how many requests it holds, excluding every batch volley already owns.
        let earliest = hint.started_at - CLOCK_SKEW;
        let mut after_id: Option<String> = None;
        let mut best: Option<(jiff::SignedDuration, RemoteBatch)> = None;
        loop {
            let mut url = self.endpoint.url("/v1/messages/batches?limit=100");
            if let Some(after) = &after_id {
                url.push_str(&format!("&after_id={after}"));
            }
            let body = self
                .call(self.request("list batches", Method::GET, url))
                .await?;
            let page = convert::parse_batch_page(&body).map_err(|e| protocol("list batches", e))?;
            let mut older_than_window = false;
            for batch in page.data {
                let Ok(created) = batch.created_at.parse::<jiff::Timestamp>() else {
                    continue;
                };
                if created < earliest {
                    older_than_window = true;
                    continue;
                }
                if batch.request_counts.total() != hint.request_count
                    || hint.known_remote_ids.contains(&batch.id)
                {
                    continue;
                }
                let distance = created.duration_since(hint.started_at).abs();
                if best.as_ref().is_none_or(|(d, _)| distance < *d) {
                    best = Some((distance, convert::remote_batch(batch)));
                }
            }
            // Newest first: once a page reaches past the window, older pages cannot match.
            if older_than_window || !page.has_more {
                break;
            }
            let Some(last) = page.last_id else { break };
            after_id = Some(last);
        }
        Ok(best.map(|(_, batch)| batch))
    }

    async fn poll(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let url = self
            .endpoint
            .url(&format!("/v1/messages/batches/{remote_id}"));
        self.batch_call(self.request("get batch", Method::GET, url))
            .await
    }

    async fn results(&self, remote: &RemoteBatch) -> Result<ResultStream, ProviderError> {
        // The key goes only to the configured origin: a results URL elsewhere is replaced by
        // the documented path on our endpoint.
        let url = match &remote.results_locator {
            Some(url) if self.endpoint.same_origin(url) => url.clone(),
            _ => self
                .endpoint
                .url(&format!("/v1/messages/batches/{}/results", remote.id)),
        };
        let lines = self
            .http
            .send_lines(
                KIND,
                self.request("download results", Method::GET, url),
                convert::parse_error,
            )
            .await?;
        Ok(lines
            .map(|line| {
                line.and_then(|line| {
                    convert::item_outcome(&line).map_err(|e| protocol("download results", e))
                })
            })
            .boxed())
    }

    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let url = self
            .endpoint
            .url(&format!("/v1/messages/batches/{remote_id}/cancel"));
        let mut request = self.request("cancel batch", Method::POST, url);
        // Cancelling twice is harmless.
        request.idempotent = true;
        self.batch_call(request).await
    }

    async fn release(&self, _remote: &RemoteBatch) -> Result<(), ProviderError> {
        // Anthropic batches upload no files; finished batches are removed by `volley cleanup`.
        Ok(())
    }

    async fn count_input_tokens(&self, request: &Request) -> Result<Option<u64>, ProviderError> {
        let url = self.endpoint.url("/v1/messages/count_tokens");
        let mut call = self.request("count tokens", Method::POST, url);
        // Counting has no effect at the provider: repeating it is harmless.
        call.idempotent = true;
        call.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        call.body = Some(convert::count_tokens_body(request).into());
        let body = self.call(call).await?;
        convert::parse_count_tokens(&body)
            .map(Some)
            .map_err(|e| protocol("count tokens", e))
    }
}
