use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use volley_sim::{SimConfig, Simulator};

pub(crate) const MODEL: &str = "claude-haiku-4-5";

/// A simulator whose batches end after `processing_ms`.
pub(crate) async fn sim(processing_ms: u64) -> Simulator {
    sim_with(SimConfig {
        processing: Duration::from_millis(processing_ms),
        ..SimConfig::default()
    })
    .await
}

pub(crate) async fn sim_with(config: SimConfig) -> Simulator {
    Simulator::spawn(config).await.expect("simulator starts")
}

pub(crate) fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A response, decoded.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an Anthropic error body of this status and type, with the header request id.
    pub(crate) fn assert_error(&self, status: u16, kind: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.body["type"], "error", "{}", self.text);
        assert_eq!(self.body["error"]["type"], kind, "{}", self.text);
        assert!(self.body["error"]["message"].is_string());
        let rid = self.header("request-id").expect("request-id header");
        assert_eq!(self.body["request_id"], rid);
    }
}

/// A client bound to one simulator, sending the SDK's usual headers.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) key: Option<String>,
    pub(crate) version: bool,
}

impl Api {
    pub(crate) fn new(sim: &Simulator) -> Self {
        Self {
            base: sim.base_url(),
            http: http(),
            key: Some("sk-test".into()),
            version: true,
        }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.header("x-api-key", k);
        }
        if self.version {
            req = req.header("anthropic-version", "2023-06-01");
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a batch and asserts success.
    pub(crate) async fn create(&self, requests: Value) -> Value {
        let r = self
            .post("/v1/messages/batches", &json!({"requests": requests}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    /// Polls (really sleeping a few ms) until the batch has ended.
    pub(crate) async fn until_ended(&self, id: &str) -> Value {
        for _ in 0..1000 {
            let r = self.get(&format!("/v1/messages/batches/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            if r.body["processing_status"] == "ended" {
                return r.body;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("batch {id} did not end");
    }

    /// Fetches `results_url` (absolute) and parses the JSONL lines.
    pub(crate) async fn results(&self, batch: &Value) -> Vec<Value> {
        let url = batch["results_url"].as_str().expect("results_url");
        assert!(
            url.starts_with(&self.base),
            "{url} is not under {}",
            self.base
        );
        let resp = self
            .http
            .get(url)
            .header("x-api-key", "sk-test")
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "application/x-jsonl"
        );
        let text = resp.text().await.unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }
}

/// Valid batch params with this prompt.
pub(crate) fn params(prompt: &str) -> Value {
    json!({"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": prompt}]})
}

/// `n` batch requests `{prefix}-{i}`.
pub(crate) fn requests(prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"custom_id": format!("{prefix}-{i}"),
                       "params": params(&format!("Tell me about item {i}"))})
            })
            .collect(),
    )
}

impl Reply {
    /// Asserts an OpenAI error body `{error: {message, type, param, code}}` with `x-request-id`.
    pub(crate) fn assert_openai_error(&self, status: u16, kind: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let e = &self.body["error"];
        assert_eq!(e["type"], kind, "{}", self.text);
        assert!(e["message"].is_string(), "{}", self.text);
        for k in ["param", "code"] {
            assert!(e.get(k).is_some(), "{k} is sent explicitly: {}", self.text);
        }
        assert!(
            self.header("x-request-id")
                .is_some_and(|r| r.starts_with("req_")),
            "x-request-id: {:?}",
            self.headers
        );
        e
    }

    /// Asserts a Google error body `{error: {code, message, status}}`.
    pub(crate) fn assert_google_error(&self, status: u16, canonical: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let e = &self.body["error"];
        assert_eq!(e["code"], status, "{}", self.text);
        assert_eq!(e["status"], canonical, "{}", self.text);
        assert!(e["message"].is_string(), "{}", self.text);
        e
    }
}

/// A client speaking to the simulator's OpenAI routes (`Authorization: Bearer`).
pub(crate) struct Oa {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) key: Option<String>,
}

impl Oa {
    pub(crate) fn new(sim: &Simulator) -> Self {
        Self {
            base: sim.openai_base_url(),
            http: http(),
            key: Some("sk-test".into()),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let req = match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// `POST /files` (multipart), as the SDK sends it.
    pub(crate) async fn upload_raw(&self, filename: &str, purpose: &str, data: &[u8]) -> Reply {
        let boundary = "sim-test-boundary-1234";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = self
            .http
            .post(format!("{}/files", self.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(req).await
    }

    /// Uploads a batch input file and returns its id.
    pub(crate) async fn upload(&self, data: &[u8]) -> String {
        let r = self.upload_raw("input.jsonl", "batch", data).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Uploads `lines` and creates a chat batch from them.
    pub(crate) async fn batch(&self, lines: &[Value]) -> Value {
        let file = self.upload(&jsonl(lines)).await;
        let r = self
            .post(
                "/batches",
                &json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                        "completion_window": "24h"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    /// Polls (really sleeping a few ms) until the batch is final.
    pub(crate) async fn until_final(&self, id: &str) -> Value {
        for _ in 0..2000 {
            let r = self.get(&format!("/batches/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            if ["completed", "failed", "expired", "cancelled"]
                .contains(&r.body["status"].as_str().unwrap_or(""))
            {
                return r.body;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("batch {id} did not finish");
    }

    /// The lines of a file, parsed (empty for a null id).
    pub(crate) async fn lines(&self, file_id: &Value) -> Vec<Value> {
        let Some(id) = file_id.as_str() else {
            return Vec::new();
        };
        let r = self.get(&format!("/files/{id}/content")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }
}

/// A chat batch input line.
pub(crate) fn chat_line(custom_id: &str, prompt: &str) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": "gpt-4o-mini", "max_completion_tokens": 200,
                    "messages": [{"role": "user", "content": prompt}]}})
}

/// JSONL of `lines`.
pub(crate) fn jsonl(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// A client speaking to the simulator's Gemini routes (`x-goog-api-key`).
pub(crate) struct Gm {
    pub(crate) origin: String,
    pub(crate) http: reqwest::Client,
    pub(crate) key: Option<String>,
    pub(crate) version: &'static str,
}

impl Gm {
    pub(crate) fn new(sim: &Simulator) -> Self {
        Self {
            origin: sim.base_url(),
            http: http(),
            key: Some("AIza-test".into()),
            version: "v1beta",
        }
    }

    /// A request to `url` (absolute, or a path under the origin).
    pub(crate) async fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        with_key: bool,
    ) -> Reply {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.origin)
        };
        let mut req = self.http.request(method, url);
        if with_key && let Some(k) = &self.key {
            req = req.header("x-goog-api-key", k);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// `{method} /{version}/{path}` with a JSON body.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let headers = [("content-type", "application/json".to_owned())];
        self.raw(
            method,
            &format!("/{}/{path}", self.version),
            &headers,
            body.map(|b| b.to_string().into_bytes()),
            true,
        )
        .await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Starts a resumable upload; returns the upload URL.
    pub(crate) async fn start_upload(&self, size: usize, display_name: &str) -> String {
        let r = self
            .raw(
                Method::POST,
                &format!("/upload/{}/files", self.version),
                &[
                    ("x-goog-upload-protocol", "resumable".into()),
                    ("x-goog-upload-command", "start".into()),
                    ("x-goog-upload-header-content-length", size.to_string()),
                    (
                        "x-goog-upload-header-content-type",
                        "application/jsonl".into(),
                    ),
                    ("content-type", "application/json".into()),
                ],
                Some(
                    json!({"file": {"displayName": display_name, "mimeType": "application/jsonl"}})
                        .to_string()
                        .into_bytes(),
                ),
                true,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.header("x-goog-upload-status"), Some("active"));
        r.header("x-goog-upload-url")
            .expect("x-goog-upload-url")
            .to_owned()
    }

    /// One chunk (no key, as the SDK sends them).
    pub(crate) async fn chunk(&self, url: &str, offset: usize, data: &[u8], last: bool) -> Reply {
        let command = if last { "upload, finalize" } else { "upload" };
        self.raw(
            Method::POST,
            url,
            &[
                ("x-goog-upload-command", command.into()),
                ("x-goog-upload-offset", offset.to_string()),
            ],
            Some(data.to_vec()),
            false,
        )
        .await
    }

    /// Uploads `data` in chunks of `chunk` bytes; returns the `File`.
    pub(crate) async fn upload(&self, data: &[u8], display_name: &str, chunk: usize) -> Value {
        let url = self.start_upload(data.len(), display_name).await;
        let mut offset = 0;
        loop {
            let end = (offset + chunk).min(data.len());
            let last = end == data.len();
            let r = self.chunk(&url, offset, &data[offset..end], last).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            if last {
                assert_eq!(r.header("x-goog-upload-status"), Some("final"));
                return r.body["file"].clone();
            }
            assert_eq!(r.header("x-goog-upload-status"), Some("active"));
            offset = end;
        }
    }

    /// Polls (really sleeping a few ms) until the operation is done.
    pub(crate) async fn until_done(&self, name: &str) -> Value {
        for _ in 0..2000 {
            let r = self.get(name).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            if r.body["done"] == true {
                return r.body;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{name} did not finish");
    }
}

/// A Gemini `GenerateContentRequest` with this prompt.
pub(crate) fn gm_request(prompt: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}],
           "generationConfig": {"maxOutputTokens": 200}})
}

/// An inline create body with `n` requests keyed `{prefix}-{i}`.
pub(crate) fn gm_inline(prefix: &str, n: usize) -> Value {
    let requests: Vec<Value> = (0..n)
        .map(|i| {
            json!({"request": gm_request(&format!("Tell me about {prefix} {i}")),
                   "metadata": {"key": format!("{prefix}-{i}")}})
        })
        .collect();
    json!({"batch": {"displayName": prefix, "inputConfig": {"requests": {"requests": requests}}}})
}
