//! OpenAI endpoint calls, through the shared executor.
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use volley_core::ProviderError;
use volley_core::provider::{
    BatchProvider, ItemOutcome, RemoteBatch, ResultStream, Submission, SubmissionHint,
    SubmissionItem,
};
use volley_types::{ErrorKind, ProviderKind, Request};

use super::convert::{self, ResultFiles};
use super::wire::FileObject;
use crate::http::{Endpoint, HttpClient, WireRequest};

const KIND: ProviderKind = ProviderKind::OpenAi;
/// How far before the recorded intent a batch or file may be dated and still be ours (clock
/// skew between volley and the provider).
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);
/// Page size of the batch and file lists (the batch list's maximum).
const PAGE: u32 = 100;

/// The OpenAI Files + Batches API, or an OpenAI-compatible server. `endpoint.base_url`
/// includes `/v1`, as `OPENAI_BASE_URL` does; the key is sent as `Authorization: Bearer`.
#[derive(Clone)]
pub struct OpenAiProvider {
    endpoint: Endpoint,
    http: HttpClient,
}

impl OpenAiProvider {
    /// A provider at `endpoint` using `http`.
    pub fn new(endpoint: Endpoint, http: HttpClient) -> Self {
        Self { endpoint, http }
    }

    fn request(&self, operation: &'static str, method: Method, url: String) -> WireRequest {
        let mut headers = HeaderMap::new();
        let (name, value) = self.endpoint.key_header("authorization", "Bearer ");
        headers.insert(name, value);
        WireRequest {
            operation,
            idempotent: method == Method::GET || method == Method::DELETE,
            method,
            url,
            headers,
            body: None,
        }
    }

    fn json(&self, operation: &'static str, url: String, body: Vec<u8>) -> WireRequest {
        let mut request = self.request(operation, Method::POST, url);
        request
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request.body = Some(body.into());
        request
    }

    async fn call(&self, request: WireRequest) -> Result<Bytes, ProviderError> {
        let operation = request.operation;
        let response = self.http.send(KIND, request, convert::parse_error).await?;
        if response.body.is_empty() {
            return Err(protocol(operation, "empty response".into()));
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

    /// Uploads the input file of a batch (`POST /files`, `purpose=batch`). Not idempotent: a
    /// retry after a timeout could upload it twice.
    async fn upload(&self, upload: convert::Upload) -> Result<FileObject, ProviderError> {
        let mut request = self.request(
            "upload batch file",
            Method::POST,
            self.endpoint.url("/files"),
        );
        let content_type = HeaderValue::from_str(&upload.content_type)
            .expect("the multipart content type is plain ASCII");
        request.headers.insert(CONTENT_TYPE, content_type);
        request.body = Some(upload.body.into());
        let body = self.call(request).await?;
        convert::parse_file(&body).map_err(|e| protocol("upload batch file", e))
    }

    /// Deletes a file (`DELETE /files/{id}`). A file that is already gone counts as deleted.
    pub async fn delete_file(&self, file_id: &str) -> Result<(), ProviderError> {
        let url = self.endpoint.url(&format!("/files/{file_id}"));
        match self
            .http
            .send(
                KIND,
                self.request("delete file", Method::DELETE, url),
                convert::parse_error,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Files with `purpose=batch` created no earlier than `since`, newest first (the list is
    /// paged with `after=<last id>` and stops at the first older file).
    pub async fn list_batch_files(
        &self,
        since: jiff::Timestamp,
    ) -> Result<Vec<FileObject>, ProviderError> {
        let since = since.as_second();
        let mut files = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = self.list_url(
                "/files",
                &[("purpose", "batch"), ("order", "desc")],
                after.as_deref(),
            );
            let body = self
                .call(self.request("list files", Method::GET, url))
                .await?;
            let page = convert::parse_file_page(&body).map_err(|e| protocol("list files", e))?;
            let mut reached_older = false;
            after = page.data.last().map(|f| f.id.clone());
            for file in page.data {
                if file.created_at.is_some_and(|t| t < since) {
                    reached_older = true;
                    continue;
                }
                files.push(file);
            }
            if reached_older || !page.has_more || after.is_none() {
                return Ok(files);
            }
        }
    }

    fn list_url(&self, path: &str, query: &[(&str, &str)], after: Option<&str>) -> String {
        let base = self.endpoint.url(path);
        let Ok(mut url) = reqwest::Url::parse(&base) else {
            return base;
        };
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("limit", &PAGE.to_string());
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
            if let Some(after) = after {
                pairs.append_pair("after", after);
            }
        }
        url.into()
    }

    /// Deletes files named after `batch_id` that no batch uses: an input file whose create
    /// call got no answer and made no batch. Best effort: failures are logged, not returned.
    async fn sweep_orphans(&self, hint: &SubmissionHint<'_>, in_use: &[String]) {
        let name = convert::file_name(hint.batch_id);
        let files = match self.list_batch_files(hint.started_at - CLOCK_SKEW).await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(batch = hint.batch_id, %e, "could not list files to remove an unused upload");
                return;
            }
        };
        for file in files {
            if file.filename.as_deref() != Some(name.as_str()) || in_use.contains(&file.id) {
                continue;
            }
            if let Err(e) = self.delete_file(&file.id).await {
                tracing::warn!(batch = hint.batch_id, file = %file.id, %e, "could not delete an unused upload");
            }
        }
    }

    /// The lines of a file's content, parsed.
    async fn file_lines(&self, file_id: &str) -> Result<ResultStream, ProviderError> {
        let url = self.endpoint.url(&format!("/files/{file_id}/content"));
        let lines: BoxStream<'static, Result<Bytes, ProviderError>> = self
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
}

fn protocol(operation: &'static str, message: String) -> ProviderError {
    ProviderError::transport(KIND, operation, ErrorKind::Protocol, message)
}

#[async_trait]
impl BatchProvider for OpenAiProvider {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    fn wire_size(&self, item: &SubmissionItem) -> u64 {
        convert::wire_size(item)
    }

    async fn submit(&self, submission: Submission<'_>) -> Result<RemoteBatch, ProviderError> {
        let Submission {
            batch_id,
            run_id,
            items,
            ..
        } = submission;
        let upload = convert::upload_body(batch_id, &items);
        drop(items);
        let file = self.upload(upload).await?;
        let body = convert::create_batch_body(&file.id, batch_id, run_id);
        let request = self.json("create batch", self.endpoint.url("/batches"), body);
        match self.batch_call(request).await {
            Ok(mut remote) => {
                if !remote.owned_files.contains(&file.id) {
                    remote.owned_files.push(file.id);
                }
                Ok(remote)
            }
            // The provider answered: no batch exists, so nothing will ever use the file.
            Err(e) if e.had_no_effect() => {
                if let Err(delete) = self.delete_file(&file.id).await {
                    tracing::warn!(file = %file.id, %delete, "could not delete the input file of a refused batch");
                }
                Err(e)
            }
            // No answer: the batch may exist and need the file. `find_submitted` will either
            // find the batch (and own the file) or delete the file.
            Err(e) => Err(e),
        }
    }

    async fn find_submitted(
        &self,
        hint: SubmissionHint<'_>,
    ) -> Result<Option<RemoteBatch>, ProviderError> {
        // volley tags every batch with its own ids (metadata), so a lost create is found by
        // tag; batches are listed newest first, down to a little before the intent.
        let earliest = (hint.started_at - CLOCK_SKEW).as_second();
        let mut after: Option<String> = None;
        // Input files of every batch in the window, tagged or not: the orphan sweep must never
        // delete a file some batch still reads.
        let mut used_inputs = Vec::new();
        loop {
            let url = self.list_url("/batches", &[], after.as_deref());
            let body = self
                .call(self.request("list batches", Method::GET, url))
                .await?;
            let page = convert::parse_batch_page(&body).map_err(|e| protocol("list batches", e))?;
            let mut older_than_window = false;
            after = page.data.last().map(|b| b.id.clone());
            for batch in page.data {
                if batch.created_at.is_some_and(|t| t < earliest) {
                    older_than_window = true;
                    continue;
                }
                used_inputs.extend(batch.input_file_id.clone());
                if !convert::is_tagged(&batch, hint.batch_id, hint.run_id)
                    || hint.known_remote_ids.contains(&batch.id)
                {
                    continue;
                }
                return Ok(Some(convert::remote_batch(batch)));
            }
            // Cursor paging as the SDK does it: `after` is the id of the page's last batch.
            if older_than_window || !page.has_more || after.is_none() {
                break;
            }
        }
        self.sweep_orphans(&hint, &used_inputs).await;
        Ok(None)
    }

    async fn poll(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let url = self.endpoint.url(&format!("/batches/{remote_id}"));
        self.batch_call(self.request("get batch", Method::GET, url))
            .await
    }

    async fn results(&self, remote: &RemoteBatch) -> Result<ResultStream, ProviderError> {
        let files = match &remote.results_locator {
            Some(locator) => ResultFiles::parse(locator),
            // A batch seen before it ended: ask again where its files are.
            None => self
                .poll(&remote.id)
                .await?
                .results_locator
                .as_deref()
                .map(ResultFiles::parse)
                .unwrap_or_default(),
        };
        // The output file first, then the error file, opened only once the first is read
        // (so its connection never idles while the engine stores the first). Either may be
        // absent: every request failing leaves no output file.
        let first = match files.output.as_deref().or(files.error.as_deref()) {
            Some(id) => self.file_lines(id).await?,
            None => return Ok(futures::stream::empty().boxed()),
        };
        let Some(error_file) = files.output.is_some().then_some(files.error).flatten() else {
            return Ok(first);
        };
        let this = self.clone();
        let second = futures::stream::once(async move {
            match this.file_lines(&error_file).await {
                Ok(lines) => lines,
                Err(e) => futures::stream::iter([Err::<ItemOutcome, _>(e)]).boxed(),
            }
        })
        .flatten();
        Ok(first.chain(second).boxed())
    }

    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        let url = self.endpoint.url(&format!("/batches/{remote_id}/cancel"));
        let mut request = self.request("cancel batch", Method::POST, url);
        // Cancelling twice is harmless.
        request.idempotent = true;
        self.batch_call(request).await
    }

    async fn release(&self, remote: &RemoteBatch) -> Result<(), ProviderError> {
        // Input, output and error files: the results are in volley's store by now. Every file
        // is tried; the first failure is returned (`volley cleanup` retries).
        let mut first_error = None;
        for file in &remote.owned_files {
            if let Err(e) = self.delete_file(file).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn count_input_tokens(&self, request: &Request) -> Result<Option<u64>, ProviderError> {
        let url = self.endpoint.url("/responses/input_tokens");
        let mut call = self.json("count tokens", url, convert::input_tokens_body(request));
        // Counting has no effect at the provider: repeating it is harmless.
        call.idempotent = true;
        let body = self.call(call).await?;
        convert::parse_input_tokens(&body)
            .map(Some)
            .map_err(|e| protocol("count tokens", e))
    }
}
