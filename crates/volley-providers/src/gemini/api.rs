//! Gemini endpoint calls, through the shared executor.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use volley_core::ProviderError;
use volley_core::provider::{
    BatchProvider, ItemOutcome, ItemResult, RemoteBatch, RemotePhase, ResultStream, Submission,
    SubmissionHint, SubmissionItem,
};
use volley_types::{ErrorKind, ProviderKind, Request};

use super::{API_VERSION, INLINE_LIMIT, convert};
use crate::http::{Endpoint, HttpClient, WireRequest, WireResponse};

const KIND: ProviderKind = ProviderKind::Gemini;

/// What this process remembers of a batch it created, beyond what the API echoes back: the
/// request keys (to report the items of a cancelled or expired batch, which has no results
/// for them) and the uploaded request file (to delete it even if a batch does not name it).
#[derive(Debug, Clone)]
struct Created {
    keys: Arc<[String]>,
    file: Option<String>,
}

/// The Gemini batch API (`batchGenerateContent`, v1beta).
#[derive(Clone)]
pub struct GeminiProvider {
    endpoint: Endpoint,
    http: HttpClient,
    inline_limit: u64,
    created: Arc<Mutex<HashMap<String, Created>>>,
}

impl std::fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider")
            .field("endpoint", &self.endpoint)
            .field("inline_limit", &self.inline_limit)
            .finish_non_exhaustive()
    }
}

impl GeminiProvider {
    /// A provider at `endpoint` (the base URL without a version, as in
    /// `GOOGLE_GEMINI_BASE_URL`) using `http`.
    pub fn new(endpoint: Endpoint, http: HttpClient) -> Self {
        Self {
            endpoint,
            http,
            inline_limit: INLINE_LIMIT,
            created: Arc::default(),
        }
    }

    /// Sends batches whose create body is larger than `bytes` through a file upload instead
    /// of inline (default [`INLINE_LIMIT`]).
    pub fn with_inline_limit(mut self, bytes: u64) -> Self {
        self.inline_limit = bytes;
        self
    }

    /// Deletes a batch (used by `volley cleanup`). A batch already gone is not an error.
    pub async fn delete(&self, remote_id: &str) -> Result<(), ProviderError> {
        let name = batch_name(remote_id)?;
        self.delete_resource("delete batch", &name).await
    }

    /// Deletes a file (`files/{id}`). A file already gone is not an error.
    pub async fn delete_file(&self, name: &str) -> Result<(), ProviderError> {
        if !convert::is_file_name(name) {
            return Err(protocol(
                "delete file",
                format!("not a file name: {name:?}"),
            ));
        }
        self.delete_resource("delete file", name).await
    }

    async fn delete_resource(
        &self,
        operation: &'static str,
        name: &str,
    ) -> Result<(), ProviderError> {
        match self
            .call(self.request(operation, Method::DELETE, self.url(name)))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `{base}/v1beta/{path}`.
    fn url(&self, path: &str) -> String {
        self.endpoint.url(&format!("/{API_VERSION}/{path}"))
    }

    /// A request carrying the key, unless `url` is off the configured origin: the key never
    /// leaves it (and it never goes in a URL).
    fn request(&self, operation: &'static str, method: Method, url: String) -> WireRequest {
        let mut headers = HeaderMap::new();
        if self.endpoint.same_origin(&url) {
            let (name, value) = self.endpoint.key_header("x-goog-api-key", "");
            headers.insert(name, value);
        }
        WireRequest {
            operation,
            idempotent: method == Method::GET || method == Method::DELETE,
            method,
            url,
            headers,
            body: None,
        }
    }

    async fn call(&self, request: WireRequest) -> Result<WireResponse, ProviderError> {
        self.http.send(KIND, request, convert::parse_error).await
    }

    async fn get_batch(&self, name: &str) -> Result<RemoteBatch, ProviderError> {
        let response = self
            .call(self.request("get batch", Method::GET, self.url(name)))
            .await?;
        convert::parse_operation(&response.body)
            .and_then(convert::remote_batch)
            .map_err(|e| protocol("get batch", e))
    }

    /// Uploads the request file through the resumable protocol (start, then one call that
    /// sends every byte and finalizes); returns its name, `files/{id}`.
    async fn upload(&self, batch_id: &str, jsonl: Vec<u8>) -> Result<String, ProviderError> {
        let url = self.endpoint.url(&format!("/upload/{API_VERSION}/files"));
        let mut start = self.request("start upload", Method::POST, url);
        set_headers(
            &mut start.headers,
            convert::upload_start_headers(jsonl.len() as u64),
        );
        start.body =
            Some(convert::upload_start_body(&convert::upload_display_name(batch_id)).into());
        // Starting only opens an upload session; repeating it leaves nothing behind.
        start.idempotent = true;
        let started = self.call(start).await?;
        let upload_url = started
            .headers
            .get("x-goog-upload-url")
            .and_then(|v| v.to_str().ok())
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .ok_or_else(|| protocol("start upload", "no x-goog-upload-url in the answer"))?
            .to_owned();

        // The upload URL carries its own session: the key goes along only if it points at the
        // configured origin (`request` checks).
        let mut send = self.request("upload requests", Method::POST, upload_url);
        set_headers(&mut send.headers, convert::upload_finalize_headers());
        send.body = Some(Bytes::from(jsonl));
        // Sending the bytes again to the same session cannot make a second file or batch.
        send.idempotent = true;
        let sent = self.call(send).await?;
        if let Some(status) = sent
            .headers
            .get("x-goog-upload-status")
            .and_then(|v| v.to_str().ok())
            && status != "final"
        {
            return Err(protocol(
                "upload requests",
                format!("upload not finalized (x-goog-upload-status: {status})"),
            ));
        }
        convert::parse_uploaded_file(&sent.body)
            .map(|f| f.file.name)
            .map_err(|e| protocol("upload requests", e))
    }

    /// Streams a responses file: the documented download path first, python-genai's path if
    /// that one is not served.
    async fn download(
        &self,
        file: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, ProviderError>>, ProviderError> {
        let primary = self.endpoint.url(&format!(
            "/download/{API_VERSION}/{file}:download?alt=media"
        ));
        let first = self
            .http
            .send_lines(
                KIND,
                self.request("download results", Method::GET, primary),
                convert::parse_error,
            )
            .await;
        match first {
            Err(e) if e.status == Some(404) => {
                let fallback = self.url(&format!("{file}:download?alt=media"));
                self.http
                    .send_lines(
                        KIND,
                        self.request("download results", Method::GET, fallback),
                        convert::parse_error,
                    )
                    .await
            }
            other => other,
        }
    }

    fn created(&self) -> MutexGuard<'_, HashMap<String, Created>> {
        // The map holds plain data; a panic elsewhere cannot leave it half-written.
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn set_headers(headers: &mut HeaderMap, pairs: Vec<(&'static str, String)>) {
    for (name, value) in pairs {
        let value = HeaderValue::try_from(value).expect("upload header values are ASCII");
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn protocol(operation: &'static str, message: impl Into<String>) -> ProviderError {
    ProviderError::transport(KIND, operation, ErrorKind::Protocol, message)
}

/// The batch's resource name: `batches/{id}` as stored, or a bare id.
fn batch_name(remote_id: &str) -> Result<String, ProviderError> {
    let name = if remote_id.starts_with("batches/") {
        remote_id.to_owned()
    } else {
        format!("batches/{remote_id}")
    };
    if convert::is_batch_name(&name) {
        Ok(name)
    } else {
        Err(ProviderError::transport(
            KIND,
            "get batch",
            ErrorKind::InvalidRequest,
            format!("not a Gemini batch name: {remote_id:?}"),
        ))
    }
}

/// `lines` as outcomes, followed (once they are exhausted) by `unreported` for every key that
/// no line mentioned.
fn with_unreported(
    outcomes: BoxStream<'static, Result<ItemOutcome, ProviderError>>,
    unreported: Option<(Arc<[String]>, ItemResult)>,
) -> ResultStream {
    let Some((keys, result)) = unreported else {
        return outcomes;
    };
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let record = seen.clone();
    let reported = outcomes.inspect(move |outcome| {
        if let Ok(outcome) = outcome {
            record
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(outcome.custom_id.clone());
        }
    });
    let rest = stream::once(async move {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter(|k| !seen.contains(k.as_str()))
            .map(|k| {
                Ok(ItemOutcome {
                    custom_id: k.clone(),
                    result: result.clone(),
                })
            })
            .collect::<Vec<_>>()
    })
    .flat_map(stream::iter);
    reported.chain(rest).boxed()
}

#[async_trait]
impl BatchProvider for GeminiProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    fn wire_size(&self, item: &SubmissionItem) -> u64 {
        convert::wire_size(item)
    }

    async fn submit(&self, submission: Submission<'_>) -> Result<RemoteBatch, ProviderError> {
        let model = convert::model_id(submission.model);
        let batch_id = submission.batch_id;
        // Results are matched to requests by key; the requests themselves go once the body
        // (or the file) is built.
        let keys: Vec<String> = submission
            .items
            .iter()
            .map(|i| i.custom_id.clone())
            .collect();
        let payload = convert::payload(batch_id, &submission.items, self.inline_limit);
        drop(submission);
        let (body, uploaded) = match payload {
            convert::Payload::Inline(body) => (body, None),
            convert::Payload::File(lines) => {
                let file = self.upload(batch_id, lines).await?;
                (convert::file_body(batch_id, &file), Some(file))
            }
        };
        let url = self.url(&format!("models/{model}:batchGenerateContent"));
        let mut request = self.request("create batch", Method::POST, url);
        request
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request.body = Some(body.into());
        // Creating twice makes two batches: never retried after a timeout (see WireRequest).
        request.idempotent = false;
        let created = match self.call(request).await {
            Ok(response) => convert::parse_operation(&response.body)
                .and_then(convert::remote_batch)
                .map_err(|e| protocol("create batch", e)),
            Err(e) => Err(e),
        };
        match created {
            Ok(mut remote) => {
                if let Some(file) = &uploaded
                    && !remote.owned_files.contains(file)
                {
                    remote.owned_files.push(file.clone());
                }
                self.created().insert(
                    remote.id.clone(),
                    Created {
                        keys: keys.into(),
                        file: uploaded,
                    },
                );
                Ok(remote)
            }
            Err(e) => {
                // The API answered with an error: no batch refers to the file, so it goes.
                // Without an answer the batch may exist and use it; then it stays, and is
                // released with the batch once `find_submitted` finds it.
                if let Some(file) = uploaded
                    && e.had_no_effect()
                    && let Err(d) = self.delete_file(&file).await
                {
                    tracing::warn!(%file, error = %d, "could not delete the request file of a rejected batch");
                }
                Err(e)
            }
        }
    }

    async fn find_submitted(
        &self,
        hint: SubmissionHint<'_>,
    ) -> Result<Option<RemoteBatch>, ProviderError> {
        // Every batch volley creates is named with volley's batch id, so a lost create is
        // recognised by its display name (and, where reported, its request count).
        let mut token: Option<String> = None;
        let mut tokens_seen = HashSet::new();
        loop {
            let mut url = reqwest::Url::parse(&self.url("batches"))
                .map_err(|e| protocol("list batches", format!("bad base URL: {e}")))?;
            url.query_pairs_mut().append_pair("pageSize", "100");
            if let Some(token) = &token {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            let response = self
                .call(self.request("list batches", Method::GET, url.into()))
                .await?;
            let page = convert::parse_batch_page(&response.body)
                .map_err(|e| protocol("list batches", e))?;
            for op in page.operations {
                let Some(batch) = &op.metadata else { continue };
                let name = if op.name.is_empty() {
                    &batch.name
                } else {
                    &op.name
                };
                let count = batch.batch_stats.map_or(0, |s| s.request_count);
                if batch.display_name != hint.batch_id
                    || hint.known_remote_ids.contains(name)
                    || (count != 0 && count != hint.request_count)
                {
                    continue;
                }
                return convert::remote_batch(op)
                    .map(Some)
                    .map_err(|e| protocol("list batches", e));
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if tokens_seen.insert(next.clone()) => token = Some(next),
                _ => return Ok(None),
            }
        }
    }

    async fn poll(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        self.get_batch(&batch_name(remote_id)?).await
    }

    async fn results(&self, remote: &RemoteBatch) -> Result<ResultStream, ProviderError> {
        // A fresh read: polls skip the inline responses, this one parses them.
        let name = batch_name(&remote.id)?;
        let response = self
            .call(self.request("get batch results", Method::GET, self.url(&name)))
            .await?;
        let op = convert::parse_operation_output(&response.body)
            .map_err(|e| protocol("get batch results", e))?;

        let unreported = convert::unreported_result(convert::batch_state(&op)).map(|result| {
            let echoed = convert::echoed_keys(&op);
            let keys: Arc<[String]> = if echoed.is_empty() {
                self.created()
                    .get(&name)
                    .map_or_else(|| Arc::from([]), |c| c.keys.clone())
            } else {
                echoed.into()
            };
            (keys, result)
        });

        if let Some(file) = convert::responses_file(&op) {
            if !convert::is_file_name(file) {
                return Err(protocol(
                    "get batch results",
                    format!("unexpected responses file name {file:?}"),
                ));
            }
            let lines = self.download(file).await?;
            let outcomes = lines
                .map(|line| {
                    line.and_then(|line| {
                        convert::file_line_outcome(&line)
                            .map_err(|e| protocol("download results", e))
                    })
                })
                .boxed();
            return Ok(with_unreported(outcomes, unreported));
        }
        let outcomes: Vec<_> = convert::inline_output(op)
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.map_err(|e| protocol("get batch results", e)))
            .collect();
        Ok(with_unreported(stream::iter(outcomes).boxed(), unreported))
    }

    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let name = batch_name(remote_id)?;
        let url = self.url(&format!("{name}:cancel"));
        let mut request = self.request("cancel batch", Method::POST, url);
        // Cancelling twice is harmless.
        request.idempotent = true;
        self.call(request).await?;
        // The answer is `{}`; the batch says where it is.
        let mut remote = self.get_batch(&name).await?;
        if remote.phase == RemotePhase::Running {
            remote.phase = RemotePhase::Canceling;
        }
        Ok(remote)
    }

    async fn release(&self, remote: &RemoteBatch) -> Result<(), ProviderError> {
        // The uploaded request file and the generated responses file; the batch itself stays
        // (with any inline results) until `volley cleanup`.
        let remembered = self.created().remove(&remote.id).and_then(|c| c.file);
        let mut files: Vec<String> = Vec::new();
        for file in remote
            .owned_files
            .iter()
            .chain(remote.results_locator.iter())
            .chain(remembered.iter())
        {
            if convert::is_file_name(file) && !files.contains(file) {
                files.push(file.clone());
            }
        }
        let mut first_error = None;
        for file in &files {
            if let Err(e) = self.delete_file(file).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn count_input_tokens(&self, request: &Request) -> Result<Option<u64>, ProviderError> {
        let model = convert::model_id(&request.model);
        let url = self.url(&format!("models/{model}:countTokens"));
        let mut call = self.request("count tokens", Method::POST, url);
        // Counting has no effect at the provider: repeating it is harmless.
        call.idempotent = true;
        call.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        call.body = Some(convert::count_tokens_body(request).into());
        let response = self.call(call).await?;
        convert::parse_count_tokens(&response.body)
            .map(Some)
            .map_err(|e| protocol("count tokens", e))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use volley_core::retry::RetryPolicy;

    use super::*;

    fn provider() -> GeminiProvider {
        GeminiProvider::new(
            Endpoint::new("http://127.0.0.1:8080/", SecretString::from("AIza-secret")),
            HttpClient::new(RetryPolicy::default()),
        )
    }

    #[test]
    fn the_key_goes_in_a_header_and_only_to_the_configured_origin() {
        let p = provider();
        let own = p.request("get batch", Method::GET, p.url("batches/x"));
        assert_eq!(own.url, "http://127.0.0.1:8080/v1beta/batches/x");
        assert!(own.headers.get("x-goog-api-key").is_some());
        assert!(!own.url.contains("secret"));
        let elsewhere = p.request(
            "upload requests",
            Method::POST,
            "https://upload.example/upload?upload_id=1".into(),
        );
        assert!(elsewhere.headers.get("x-goog-api-key").is_none());
        assert!(!format!("{p:?}").contains("secret"));
    }

    #[test]
    fn only_reads_and_deletes_are_idempotent() {
        let p = provider();
        assert!(p.request("x", Method::GET, p.url("a")).idempotent);
        assert!(p.request("x", Method::DELETE, p.url("a")).idempotent);
        assert!(!p.request("x", Method::POST, p.url("a")).idempotent);
    }

    #[test]
    fn batch_names_are_checked() {
        assert_eq!(batch_name("batches/abc").unwrap(), "batches/abc");
        assert_eq!(batch_name("abc").unwrap(), "batches/abc");
        assert!(batch_name("batches/../files/x").is_err());
        assert!(batch_name("").is_err());
    }

    #[tokio::test]
    async fn unreported_keys_follow_the_reported_ones() {
        let reported = stream::iter(vec![
            Ok(ItemOutcome {
                custom_id: "a".into(),
                result: ItemResult::Expired,
            }),
            Err(protocol("download results", "bad line")),
        ])
        .boxed();
        let keys: Arc<[String]> = vec!["a".to_owned(), "b".into(), "c".into()].into();
        let out: Vec<_> = with_unreported(reported, Some((keys, ItemResult::Canceled)))
            .collect()
            .await;
        let shown: Vec<String> = out
            .iter()
            .map(|o| match o {
                Ok(o) => format!("{}={:?}", o.custom_id, o.result),
                Err(e) => e.message.clone(),
            })
            .collect();
        assert_eq!(shown, ["a=Expired", "bad line", "b=Canceled", "c=Canceled"]);
    }
}
