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
