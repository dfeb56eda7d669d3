//! The Gemini routes: batch mode, Files (resumable upload), generateContent, countTokens.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use volley_sim::{FileApi, SimConfig};

use crate::support::{Gm, gm_inline, gm_request, sim, sim_with};

const FLASH: &str = "models/gemini-2.5-flash";

fn stats(op: &Value) -> &Value {
    &op["metadata"]["batchStats"]
}

/// PENDING → RUNNING → SUCCEEDED on a paused clock: the Operation envelope, int64 strings,
/// zero counts left out, the output in both places with double nesting.
#[tokio::test(start_paused = true)]
async fn inline_batch_lifecycle_on_a_paused_clock() {
    let sim = sim(10_000).await;
    let mut gm = Gm::new(&sim);
    gm.http = reqwest::Client::builder().build().unwrap();
    let mut body = gm_inline("life", 20);
    body["batch"]["inputConfig"]["requests"]["requests"][3]["metadata"] =
        json!({"key": "life-3", "extra": [1, 2]});
    body["batch"]["inputConfig"]["requests"]["requests"][7]["request"] = json!({"contents": []});
    let r = gm
        .post(&format!("{FLASH}:batchGenerateContent"), &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let op = r.body;
    let name = op["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("batches/"), "{name}");
    let id = name.strip_prefix("batches/").unwrap();
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{id}"
    );
    assert!(
        op.get("done").is_none(),
        "done is left out while false: {op}"
    );
    let m = &op["metadata"];
    assert_eq!(
        m["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"
    );
    assert_eq!(m["name"], name.as_str());
    assert_eq!(m["model"], FLASH);
    assert_eq!(m["displayName"], "life");
    assert_eq!(m["state"], "BATCH_STATE_PENDING");
    assert_eq!(
        stats(&op),
        &json!({"requestCount": "20", "pendingRequestCount": "20"})
    );
    assert!(m["createTime"].as_str().unwrap().ends_with('Z'));
    assert!(m.get("endTime").is_none() && m.get("output").is_none());

    let at = |ms| tokio::time::advance(Duration::from_millis(ms));
    at(1_000).await;
    let op = gm.get(&name).await.body;
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_RUNNING");
    at(4_000).await;
    let op = gm.get(&name).await.body;
    let s = stats(&op);
    let n = |k: &str| s[k].as_str().map_or(0, |v| v.parse::<u64>().unwrap());
    assert_eq!(n("requestCount"), 20);
    assert!((1..20).contains(&n("pendingRequestCount")), "{s}");
    at(5_000).await;
    let op = gm.get(&name).await.body;
    assert_eq!(op["done"], true);
    let m = &op["metadata"];
    assert_eq!(m["state"], "BATCH_STATE_SUCCEEDED");
    assert!(m["endTime"].is_string());
    assert_eq!(
        stats(&op),
        &json!({"requestCount": "20", "successfulRequestCount": "19", "failedRequestCount": "1"})
    );
    let output = &m["output"];
    let response = &op["response"];
    assert_eq!(
        response["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
    );
    assert_eq!(response["inlinedResponses"], output["inlinedResponses"]);
    let items = output["inlinedResponses"]["inlinedResponses"]
        .as_array()
        .unwrap();
    assert_eq!(items.len(), 20);
    for (i, item) in items.iter().enumerate() {
        if i == 3 {
            assert_eq!(item["metadata"], json!({"key": "life-3", "extra": [1, 2]}));
        } else {
            assert_eq!(
                item["metadata"],
                json!({"key": format!("life-{i}")}),
                "input order"
            );
        }
        if i == 7 {
            let e = &item["error"];
            assert_eq!(
                (e["code"].as_i64(), e["status"].as_str()),
                (Some(400), Some("INVALID_ARGUMENT"))
            );
            assert!(e["message"].as_str().unwrap().contains("contents"));
            continue;
        }
        let r = &item["response"];
        let c = &r["candidates"][0];
        assert_eq!(c["content"]["role"], "model");
        assert!(c["content"]["parts"][0]["text"].is_string());
        assert_eq!(c["finishReason"], "STOP");
        assert_eq!(c["index"], 0);
        let u = &r["usageMetadata"];
        assert!(u["promptTokenCount"].is_u64(), "int32 numbers: {u}");
        assert_eq!(
            u["totalTokenCount"].as_u64().unwrap(),
            u["promptTokenCount"].as_u64().unwrap() + u["candidatesTokenCount"].as_u64().unwrap()
        );
        assert_eq!(r["modelVersion"], "gemini-2.5-flash");
    }
    // The batch answers what generateContent answers.
    let rt = gm
        .post(
            &format!("{FLASH}:generateContent"),
            &gm_request("Tell me about life 5"),
        )
        .await;
    assert_eq!(rt.status, 200, "{}", rt.text);
    assert_eq!(rt.body["candidates"], items[5]["response"]["candidates"]);
    assert_eq!(
        rt.body["usageMetadata"],
        items[5]["response"]["usageMetadata"]
    );
    assert_eq!(sim.stats().requests_submitted, 20);
}

#[tokio::test]
async fn v1_and_snake_case_and_query_key() {
    let sim = sim(0).await;
    let mut gm = Gm::new(&sim);
    gm.version = "v1";
    let snake = json!({"batch": {"display_name": "snake", "input_config": {"requests": {"requests": [
        {"request": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                     "system_instruction": {"parts": [{"text": "Be brief."}]},
                     "generation_config": {"max_output_tokens": 50}},
         "metadata": {"key": "s-1"}}]}}}});
    let r = gm
        .post(&format!("{FLASH}:batchGenerateContent"), &snake)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let op = r.body;
    assert_eq!(op["done"], true, "processing 0 ends at once");
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.ai.generativelanguage.v1.GenerateContentBatch"
    );
    assert_eq!(op["metadata"]["displayName"], "snake");
    let item = &op["response"]["inlinedResponses"]["inlinedResponses"][0];
    assert_eq!(item["metadata"]["key"], "s-1");
    let camel = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                       "systemInstruction": {"parts": [{"text": "Be brief."}]},
                       "generationConfig": {"maxOutputTokens": 50}});
    let rt = gm
        .raw(
            Method::POST,
            "/v1/models/gemini-2.5-flash:generateContent?key=AIza-q",
            &[("content-type", "application/json".into())],
            Some(camel.to_string().into_bytes()),
            false,
        )
        .await;
    assert_eq!(rt.status, 200, "{}", rt.text);
    assert_eq!(rt.body["candidates"], item["response"]["candidates"]);
    // The batch is visible under both versions.
    gm.version = "v1beta";
    assert_eq!(gm.get(op["name"].as_str().unwrap()).await.status, 200);
}

#[tokio::test]
async fn file_batch_with_resumable_upload_and_downloads() {
    let sim = sim(30).await;
    let gm = Gm::new(&sim);
    let mut data = Vec::new();
    for i in 0..12 {
        data.extend_from_slice(
            json!({"key": format!("f-{i}"), "request": gm_request(&format!("File item {i}"))})
                .to_string()
                .as_bytes(),
        );
        data.push(b'\n');
    }
    // Chunks of 300 bytes: the middle ones answer `active`, the last `final`.
    let file = gm.upload(&data, "requests", 300).await;
    let name = file["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("files/"), "{file}");
    assert_eq!(file["displayName"], "requests");
    assert_eq!(file["mimeType"], "application/jsonl");
    assert_eq!(
        file["sizeBytes"],
        data.len().to_string(),
        "int64 as a string"
    );
    assert_eq!(file["state"], "ACTIVE");
    assert_eq!(file["source"], "UPLOADED");
    assert!(file.get("downloadUri").is_none());
    assert_eq!(
        file["sha256Hash"].as_str().unwrap().len(),
        44,
        "base64 of 32 bytes"
    );
    assert!(file["expirationTime"].is_string());
    assert_eq!(gm.get(&name).await.body, file);
    let s = sim.stats();
    assert_eq!((s.files_uploaded, s.files_stored), (1, 1));

    // An uploaded file cannot be downloaded.
    gm.get(&format!("{name}:download?alt=media"))
        .await
        .assert_google_error(400, "INVALID_ARGUMENT");

    let r = gm
        .post(
            &format!("{FLASH}:batchGenerateContent"),
            &json!({"batch": {"displayName": "file-batch", "inputConfig": {"fileName": name}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["inputConfig"]["fileName"], name.as_str());
    let op = gm.until_done(r.body["name"].as_str().unwrap()).await;
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    let responses = op["metadata"]["output"]["responsesFile"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(op["response"]["responsesFile"], responses.as_str());
    assert!(responses.starts_with("files/batch-"), "{responses}");
    let generated = gm.get(&responses).await.body;
    assert_eq!(generated["source"], "GENERATED");
    let download_uri = generated["downloadUri"].as_str().unwrap().to_owned();
    assert!(download_uri.contains("/download/v1beta/files/batch-"));

    // Both download paths serve the same lines.
    let a = gm.raw(Method::GET, &download_uri, &[], None, true).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let b = gm
        .raw(
            Method::GET,
            &format!("/v1beta/{responses}:download?alt=media"),
            &[],
            None,
            true,
        )
        .await;
    assert_eq!(a.text, b.text);
    assert_eq!(generated["sizeBytes"], a.text.len().to_string());
    let mut keys: Vec<String> = a
        .text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v["response"]["candidates"][0]["content"]["parts"][0]["text"].is_string());
            v["key"].as_str().unwrap().to_owned()
        })
        .collect();
    keys.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("f-{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected);

    // The files list pages with nextPageToken; both files are there.
    let p1 = gm.get("files?pageSize=1").await.body;
    assert_eq!(p1["files"].as_array().unwrap().len(), 1);
    assert_eq!(p1["files"][0]["name"], responses.as_str(), "newest first");
    let token = p1["nextPageToken"].as_str().unwrap();
    let p2 = gm
        .get(&format!("files?pageSize=1&pageToken={token}"))
        .await
        .body;
    assert_eq!(p2["files"][0]["name"], name.as_str());
    assert!(p2.get("nextPageToken").is_none(), "{p2}");
    assert_eq!(
        sim.files()
            .iter()
            .filter(|f| f.api == FileApi::Gemini)
            .count(),
        2
    );

    for f in [&name, &responses] {
        let d = gm.delete(f).await;
        assert_eq!(
            (d.status.as_u16(), &d.body),
            (200, &json!({})),
            "{}",
            d.text
        );
        gm.get(f).await.assert_google_error(404, "NOT_FOUND");
        gm.delete(f).await.assert_google_error(404, "NOT_FOUND");
    }
    assert_eq!(sim.stats().files_stored, 0);
    assert_eq!(gm.get("files").await.body, json!({}));
    // The batch outlives its files.
    assert_eq!(gm.get(op["name"].as_str().unwrap()).await.status, 200);
}

#[tokio::test]
async fn resumable_upload_protocol_details() {
    let sim = sim(0).await;
    let gm = Gm::new(&sim);
    let url = gm.start_upload(10, "x").await;
    assert!(url.starts_with(&sim.base_url()), "{url}");
    assert!(url.contains("upload_id="), "{url}");
    let r = gm.chunk(&url, 0, b"hello", false).await;
    assert_eq!(r.header("x-goog-upload-status"), Some("active"));
    assert_eq!(r.header("x-goog-upload-size-received"), Some("5"));
    // A wrong offset is refused and changes nothing.
    let r = gm.chunk(&url, 3, b"world", true).await;
    r.assert_google_error(400, "INVALID_ARGUMENT");
    let q = gm
        .raw(
            Method::POST,
            &url,
            &[("x-goog-upload-command", "query".into())],
            None,
            false,
        )
        .await;
    assert_eq!(q.header("x-goog-upload-size-received"), Some("5"));
    // Finalizing short of the declared size is refused.
    let r = gm.chunk(&url, 5, b"wor", true).await;
    r.assert_google_error(400, "INVALID_ARGUMENT");
    let r = gm.chunk(&url, 8, b"ld", true).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-goog-upload-status"), Some("final"));
    assert_eq!(r.body["file"]["sizeBytes"], "10");
    // A retried finalize answers the same file.
    let again = gm.chunk(&url, 8, b"ld", true).await;
    assert_eq!(again.body["file"]["name"], r.body["file"]["name"]);
    assert_eq!(sim.stats().files_uploaded, 1);
    // The start needs a key and the resumable protocol; unknown sessions are not found.
    let no_key = gm
        .raw(
            Method::POST,
            "/upload/v1beta/files",
            &[
                ("x-goog-upload-protocol", "resumable".into()),
                ("x-goog-upload-command", "start".into()),
            ],
            None,
            false,
        )
        .await;
    no_key.assert_google_error(403, "PERMISSION_DENIED");
    let multipart = gm
        .raw(
            Method::POST,
            "/upload/v1beta/files",
            &[("x-goog-upload-protocol", "multipart".into())],
            None,
            true,
        )
        .await;
    multipart.assert_google_error(400, "INVALID_ARGUMENT");
    gm.chunk(
        &format!("{}/upload/v1beta/files?upload_id=nope", sim.base_url()),
        0,
        b"x",
        true,
    )
    .await
    .assert_google_error(404, "NOT_FOUND");
    // A chosen name is kept; a taken one conflicts.
    let named = gm
        .raw(
            Method::POST,
            "/upload/v1/files",
            &[
                ("x-goog-upload-protocol", "resumable".into()),
                ("x-goog-upload-command", "start".into()),
            ],
            Some(
                json!({"file": {"name": "files/my-requests"}})
                    .to_string()
                    .into_bytes(),
            ),
            true,
        )
        .await;
    let url = named.header("x-goog-upload-url").unwrap().to_owned();
    assert!(url.contains("/upload/v1/files"), "{url}");
    let done = gm.chunk(&url, 0, b"{}", true).await;
    assert_eq!(done.body["file"]["name"], "files/my-requests");
    let taken = gm
        .raw(
            Method::POST,
            "/upload/v1/files",
            &[
                ("x-goog-upload-protocol", "resumable".into()),
                ("x-goog-upload-command", "start".into()),
            ],
            Some(
                json!({"file": {"name": "files/my-requests"}})
                    .to_string()
                    .into_bytes(),
            ),
            true,
        )
        .await;
    taken.assert_google_error(409, "ALREADY_EXISTS");
}

#[tokio::test]
async fn validation_errors() {
    let sim = sim(0).await;
    let gm = Gm::new(&sim);
    let gm = &gm;
    let create = |body: Value| async move {
        gm.post(&format!("{FLASH}:batchGenerateContent"), &body)
            .await
    };
    let e = gm
        .post(
            "models/gemini-no-such-model:batchGenerateContent",
            &gm_inline("x", 1),
        )
        .await;
    let err = e.assert_google_error(404, "NOT_FOUND");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("models/gemini-no-such-model")
    );
    create(json!({}))
        .await
        .assert_google_error(400, "INVALID_ARGUMENT");
    create(json!({"batch": {"inputConfig": {}}}))
        .await
        .assert_google_error(400, "INVALID_ARGUMENT");
    create(json!({"batch": {"inputConfig": {"requests": {"requests": []}}}}))
        .await
        .assert_google_error(400, "INVALID_ARGUMENT");
    create(
        json!({"batch": {"inputConfig": {"requests": {"requests": [{"metadata": {"key": "a"}}]}}}}),
    )
    .await
    .assert_google_error(400, "INVALID_ARGUMENT");
    create(json!({"batch": {"inputConfig": {"fileName": "files/nope"}}}))
        .await
        .assert_google_error(404, "NOT_FOUND");
    let both = json!({"batch": {"inputConfig": {"fileName": "files/x",
                                                 "requests": {"requests": [{"request": gm_request("x")}]}}}});
    create(both)
        .await
        .assert_google_error(400, "INVALID_ARGUMENT");
    let bad_json = gm
        .raw(
            Method::POST,
            &format!("/v1beta/{FLASH}:batchGenerateContent"),
            &[],
            Some(b"{nope".to_vec()),
            true,
        )
        .await;
    bad_json.assert_google_error(400, "INVALID_ARGUMENT");
    let too_big = gm
        .raw(
            Method::POST,
            &format!("/v1beta/{FLASH}:generateContent"),
            &[],
            Some(vec![b' '; 20 * 1024 * 1024 + 1]),
            true,
        )
        .await;
    let err = too_big.assert_google_error(400, "INVALID_ARGUMENT");
    assert!(err["message"].as_str().unwrap().contains("20971520"));
    assert_eq!(sim.stats().batches_created, 0);

    let bad = gm
        .post(
            &format!("{FLASH}:generateContent"),
            &json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"bogus": 1}}),
        )
        .await;
    let err = bad.assert_google_error(400, "INVALID_ARGUMENT");
    assert!(err["message"].as_str().unwrap().contains("bogus"));
    gm.get("batches/nope")
        .await
        .assert_google_error(404, "NOT_FOUND");
    gm.post("batches/nope:cancel", &json!({}))
        .await
        .assert_google_error(404, "NOT_FOUND");
    gm.delete("batches/nope")
        .await
        .assert_google_error(404, "NOT_FOUND");
    gm.get("batches?pageToken=zz")
        .await
        .assert_google_error(400, "INVALID_ARGUMENT");
    gm.post("models/gemini-2.5-flash:unknownVerb", &json!({}))
        .await
        .assert_google_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn a_bad_file_fails_the_batch_after_validation() {
    let sim = sim(20).await;
    let gm = Gm::new(&sim);
    let file = gm.upload(b"{\"key\": \"a\", \"request\": {\"contents\": [{\"parts\": [{\"text\": \"x\"}]}]}}\nnot json\n", "bad", 1 << 20).await;
    let r = gm
        .post(
            &format!("{FLASH}:batchGenerateContent"),
            &json!({"batch": {"inputConfig": {"fileName": file["name"]}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["metadata"]["state"], "BATCH_STATE_PENDING");
    let op = gm.until_done(r.body["name"].as_str().unwrap()).await;
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_FAILED");
    assert_eq!(op["error"]["code"], 3);
    assert!(op["error"]["message"].as_str().unwrap().contains("line 2"));
    assert!(op.get("response").is_none());
}

#[tokio::test]
async fn auth_errors() {
    let sim = sim_with(SimConfig {
        api_key: Some("AIza-right".into()),
        ..SimConfig::default()
    })
    .await;
    let mut gm = Gm::new(&sim);
    gm.key = Some("AIza-wrong".into());
    let r = gm.get("batches").await;
    let err = r.assert_google_error(400, "INVALID_ARGUMENT");
    assert!(
        err["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["reason"] == "API_KEY_INVALID"),
        "{err}"
    );
    assert!(!r.text.contains("AIza-wrong"));
    let q = gm
        .raw(
            Method::GET,
            "/v1beta/batches?key=AIza-wrong",
            &[],
            None,
            false,
        )
        .await;
    q.assert_google_error(400, "INVALID_ARGUMENT");
    gm.key = None;
    gm.get("batches")
        .await
        .assert_google_error(403, "PERMISSION_DENIED");
    let ok = gm
        .raw(
            Method::GET,
            "/v1beta/batches?key=AIza-right",
            &[],
            None,
            false,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body, json!({}), "an empty list is an empty object");
}

#[tokio::test]
async fn cancel_delete_and_list() {
    let sim = sim(60_000).await;
    let gm = Gm::new(&sim);
    let mut names = Vec::new();
    for i in 0..5 {
        let r = gm
            .post(
                &format!("{FLASH}:batchGenerateContent"),
                &gm_inline(&format!("l{i}"), 3),
            )
            .await;
        names.push(r.body["name"].as_str().unwrap().to_owned());
    }
    let c = gm.post(&format!("{}:cancel", names[0]), &json!({})).await;
    assert_eq!(
        (c.status.as_u16(), &c.body),
        (200, &json!({})),
        "{}",
        c.text
    );
    let op = gm.get(&names[0]).await.body;
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_CANCELLED");
    assert_eq!(op["done"], true);
    assert_eq!(
        stats(&op),
        &json!({"requestCount": "3", "failedRequestCount": "3"})
    );
    let items = &op["response"]["inlinedResponses"]["inlinedResponses"];
    for item in items.as_array().unwrap() {
        assert_eq!(item["error"]["status"], "CANCELLED");
        assert!(item["metadata"]["key"].is_string());
    }
    // Cancelling again is harmless; a finished batch cannot be cancelled.
    assert_eq!(
        gm.post(&format!("{}:cancel", names[0]), &json!({}))
            .await
            .status,
        200
    );

    let mut seen = Vec::new();
    let mut query = "batches?pageSize=2".to_owned();
    loop {
        let p = gm.get(&query).await.body;
        for op in p["operations"].as_array().unwrap() {
            seen.push(op["name"].as_str().unwrap().to_owned());
        }
        match p.get("nextPageToken").and_then(Value::as_str) {
            Some(t) => query = format!("batches?pageSize=2&pageToken={t}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = names.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let d = gm.delete(&names[1]).await;
    assert_eq!((d.status.as_u16(), &d.body), (200, &json!({})));
    gm.get(&names[1])
        .await
        .assert_google_error(404, "NOT_FOUND");
    assert_eq!(
        gm.get("batches?pageSize=100").await.body["operations"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let gm = Gm::new(&sim);
    let r = gm
        .post(&format!("{FLASH}:batchGenerateContent"), &gm_inline("d", 1))
        .await;
    let e = gm
        .post(
            &format!("{}:cancel", r.body["name"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    e.assert_google_error(400, "FAILED_PRECONDITION");
}

#[tokio::test]
async fn expired_and_errored_requests() {
    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        expired_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let gm = Gm::new(&sim);
    let op = gm
        .post(&format!("{FLASH}:batchGenerateContent"), &gm_inline("x", 3))
        .await
        .body;
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_EXPIRED");
    assert_eq!(op["done"], true);
    assert!(op.get("response").is_none() && op["metadata"].get("output").is_none());
    assert!(op["error"]["message"].is_string());

    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        error_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let gm = Gm::new(&sim);
    let op = gm
        .post(&format!("{FLASH}:batchGenerateContent"), &gm_inline("e", 3))
        .await
        .body;
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    assert_eq!(
        stats(&op),
        &json!({"requestCount": "3", "failedRequestCount": "3"})
    );
    for item in op["response"]["inlinedResponses"]["inlinedResponses"]
        .as_array()
        .unwrap()
    {
        assert_eq!(item["error"]["status"], "INTERNAL");
        assert_eq!(item["error"]["code"], 500);
    }
}

#[tokio::test]
async fn faults_carry_retry_info_and_have_no_side_effect() {
    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        rate_limit_every: Some(1),
        retry_after: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let gm = Gm::new(&sim);
    let r = gm
        .post(&format!("{FLASH}:batchGenerateContent"), &gm_inline("r", 2))
        .await;
    let err = r.assert_google_error(429, "RESOURCE_EXHAUSTED");
    let retry = err["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        .expect("RetryInfo");
    assert_eq!(retry["retryDelay"], "0.300s");
    assert_eq!(r.header("retry-after"), Some("1"));
    // A faulted upload chunk leaves the session as it was.
    sim.set_config(SimConfig::default());
    let url = gm.start_upload(4, "f").await;
    sim.set_config(SimConfig {
        rate_limit_every: Some(1),
        ..SimConfig::default()
    });
    gm.chunk(&url, 0, b"abcd", true)
        .await
        .assert_google_error(429, "RESOURCE_EXHAUSTED");
    sim.set_config(SimConfig {
        server_error_every: Some(1),
        ..SimConfig::default()
    });
    gm.chunk(&url, 0, b"abcd", true)
        .await
        .assert_google_error(503, "UNAVAILABLE");
    gm.get("batches").await.assert_google_error(500, "INTERNAL");
    sim.set_config(SimConfig::default());
    let done = gm.chunk(&url, 0, b"abcd", true).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let s = sim.stats();
    assert_eq!(
        (s.batches_created, s.files_uploaded, s.faults_injected),
        (0, 1, 4)
    );
}

#[tokio::test]
async fn enqueued_token_limit_refuses_the_create() {
    let sim = sim_with(SimConfig {
        processing: Duration::from_millis(200),
        enqueued_token_limit: Some(150),
        ..SimConfig::default()
    })
    .await;
    let gm = Gm::new(&sim);
    let first = gm
        .post(
            &format!("{FLASH}:batchGenerateContent"),
            &gm_inline("a", 10),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second = gm
        .post(
            &format!("{FLASH}:batchGenerateContent"),
            &gm_inline("b", 10),
        )
        .await;
    let err = second.assert_google_error(429, "RESOURCE_EXHAUSTED");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("gemini-2.5-flash")
    );
    assert_eq!(
        sim.stats().batches_created,
        1,
        "the refused create made nothing"
    );
    // Another model has its own budget.
    let other = gm
        .post(
            "models/gemini-2.5-pro:batchGenerateContent",
            &gm_inline("c", 10),
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.text);
    gm.until_done(first.body["name"].as_str().unwrap()).await;
    let third = gm
        .post(
            &format!("{FLASH}:batchGenerateContent"),
            &gm_inline("b", 10),
        )
        .await;
    assert_eq!(
        third.status, 200,
        "room again once the first is done: {}",
        third.text
    );
}

#[tokio::test]
async fn generate_content_schemas_bounds_and_count_tokens() {
    let sim = sim(0).await;
    let gm = Gm::new(&sim);
    let json_schema = json!({"type": "object", "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["sentiment", "score"]});
    let r = gm
        .post(
            &format!("{FLASH}:generateContent"),
            &json!({"contents": [{"parts": [{"text": "Great movie!"}]}],
                    "generationConfig": {"responseMimeType": "application/json",
                                         "responseJsonSchema": json_schema}}),
        )
        .await;
    let text = r.body["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["sentiment"], "positive");
    assert_eq!(v["score"], 1);
    let openapi = json!({"type": "OBJECT", "properties": {
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
        "ok": {"type": "BOOLEAN"}}, "required": ["tags", "ok"]});
    let r = gm
        .post(
            &format!("{FLASH}:generateContent"),
            &json!({"contents": [{"parts": [{"text": "Tags?"}]}],
                    "generationConfig": {"responseMimeType": "application/json", "responseSchema": openapi}}),
        )
        .await;
    let v: Value = serde_json::from_str(
        r.body["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(v["tags"].is_array() && v["ok"].is_boolean(), "{v}");
    let plain_json = gm
        .post(
            &format!("{FLASH}:generateContent"),
            &json!({"contents": [{"parts": [{"text": "JSON please"}]}],
                    "generationConfig": {"responseMimeType": "application/json"}}),
        )
        .await;
    let t = plain_json.body["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(serde_json::from_str::<Value>(t).unwrap().is_object());

    let cut = gm
        .post(
            &format!("{FLASH}:generateContent"),
            &json!({"contents": [{"parts": [{"text": "A long story"}]}],
                    "generationConfig": {"maxOutputTokens": 3}}),
        )
        .await;
    assert_eq!(cut.body["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(cut.body["usageMetadata"]["candidatesTokenCount"], 3);

    let contents = json!([{"role": "user", "parts": [{"text": "How many tokens is this?"}]}]);
    let counted = gm
        .post(
            &format!("{FLASH}:countTokens"),
            &json!({"contents": contents}),
        )
        .await;
    assert_eq!(counted.status, 200, "{}", counted.text);
    let used = gm
        .post(
            &format!("{FLASH}:generateContent"),
            &json!({"contents": contents}),
        )
        .await;
    assert_eq!(
        counted.body["totalTokens"],
        used.body["usageMetadata"]["promptTokenCount"]
    );
    let with_system = json!({"generateContentRequest": {"model": FLASH, "contents": contents,
        "systemInstruction": {"parts": [{"text": "Be brief."}]}}});
    let c2 = gm.post(&format!("{FLASH}:countTokens"), &with_system).await;
    assert!(c2.body["totalTokens"].as_u64() > counted.body["totalTokens"].as_u64());
    gm.post(
        "models/nope-model:countTokens",
        &json!({"contents": contents}),
    )
    .await
    .assert_google_error(404, "NOT_FOUND");
}
