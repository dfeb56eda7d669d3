#!/usr/bin/env python3
"""Drive `volley sim` with the official `google-genai` Python SDK, unchanged.

Usage: google_genai_sdk.py BASE_URL

Every Gemini endpoint the simulator serves (batch mode inline and from a file, batches
get/list/cancel/delete, the Files API with the resumable upload, both downloads,
generateContent, countTokens) is called through the SDK, under the SDK's default API version
(`v1`) and under `v1beta`, with the sync and async clients. A few checks also read the raw
wire (int64 strings, the Operation envelope) that the SDK's models smooth over. Prints one line
per check and ends with `google_genai: N passed, M failed`; exits non-zero on any failure. The
simulator is expected to run with a short processing time (the conformance script uses
300 ms) and is reset between checks through its admin surface (`/_sim/*`).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
import traceback
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

from google import genai
from google.genai import errors, types
from pydantic import BaseModel

NAME = "google_genai"
MODEL = "gemini-2.5-flash"
BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8089"
KEY = "AIza-conformance"

CHECKS: list[tuple[str, Callable[[], None]]] = []


def check(fn: Callable[[], None]) -> Callable[[], None]:
    CHECKS.append((fn.__name__, fn))
    return fn


# --- helpers -------------------------------------------------------------------------------


def admin(path: str, body: Optional[dict[str, Any]] = None) -> Any:
    """Calls the simulator's admin surface (`/_sim/...`)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{BASE}{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def raw(path: str, key: str = KEY) -> Any:
    """A GET of the raw wire (not through the SDK)."""
    req = urllib.request.Request(f"{BASE}{path}", headers={"x-goog-api-key": key})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def client(api_version: Optional[str] = None, key: str = KEY, **http: Any) -> genai.Client:
    options: dict[str, Any] = {"base_url": BASE, **http}
    if api_version:
        options["api_version"] = api_version
    return genai.Client(api_key=key, http_options=types.HttpOptions(**options))


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def raises(exc: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except exc as e:  # noqa: PERF203
        return e
    raise AssertionError(f"expected {exc.__name__}")


def assert_api_error(e: BaseException, code: int, status: str) -> None:
    expect(isinstance(e, errors.APIError), f"not an APIError: {e!r}")
    expect(e.code == code and e.status == status, f"{e.code} {e.status}: {e.message}")


def inline(prefix: str, n: int, **config: Any) -> list[dict[str, Any]]:
    reqs = []
    for i in range(n):
        r: dict[str, Any] = {
            "contents": [{"role": "user", "parts": [{"text": f"Tell me about {prefix} {i}"}]}],
            "metadata": {"key": f"{prefix}-{i}"},
        }
        if config:
            r["config"] = config
        reqs.append(r)
    return reqs


def wait(c: genai.Client, name: str, timeout: float = 15.0) -> types.BatchJob:
    deadline = time.monotonic() + timeout
    while True:
        job = c.batches.get(name=name)
        if job.state is not None and job.state.name in (
            "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
        ):
            return job
        expect(time.monotonic() < deadline, f"{name} still {job.state} after {timeout}s")
        time.sleep(0.02)


def cleanup(c: genai.Client) -> None:
    for f in c.files.list():
        c.files.delete(name=f.name)


# --- models --------------------------------------------------------------------------------


@check
def generate_content() -> None:
    c = client()  # keep a reference: a collected Client closes its connection pool
    r = c.models.generate_content(
        model=MODEL, contents="Write one line about rivers.",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=200),
    )
    expect(bool(r.text), f"{r}")
    cand = r.candidates[0]
    expect(cand.content.role == "model" and cand.finish_reason == types.FinishReason.STOP, f"{cand}")
    u = r.usage_metadata
    expect(u.prompt_token_count > 0 and u.candidates_token_count > 0, f"{u}")
    expect(u.total_token_count == u.prompt_token_count + u.candidates_token_count, f"{u}")
    expect(r.model_version == MODEL and bool(r.response_id), f"{r.model_version} {r.response_id}")


@check
def generate_content_is_deterministic_and_bounded() -> None:
    c = client()
    a = c.models.generate_content(model=MODEL, contents="Same question?")
    b = c.models.generate_content(model=MODEL, contents="Same question?")
    expect(a.text == b.text and a.usage_metadata == b.usage_metadata, "answers differ")
    cut = c.models.generate_content(model=MODEL, contents="A long story, please.",
                                    config={"max_output_tokens": 3})
    expect(cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS, f"{cut.candidates[0]}")
    expect(cut.usage_metadata.candidates_token_count == 3, f"{cut.usage_metadata}")


@check
def generate_content_structured_output() -> None:
    class Review(BaseModel):
        sentiment: str
        score: int
        tags: list[str]

    c = client()
    r = c.models.generate_content(
        model=MODEL, contents="Review: great movie!",
        config={"response_mime_type": "application/json", "response_schema": Review},
    )
    expect(isinstance(r.parsed, Review), f"{r.parsed!r} from {r.text!r}")
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}},
              "required": ["label"]}
    r = c.models.generate_content(
        model=MODEL, contents="Label it.",
        config={"response_mime_type": "application/json", "response_json_schema": schema},
    )
    expect(json.loads(r.text) == {"label": "a"}, f"{r.text}")


@check
def count_tokens_matches_usage() -> None:
    c = client()
    contents = "How many tokens is this prompt?"
    counted = c.models.count_tokens(model=MODEL, contents=contents)
    used = c.models.generate_content(model=MODEL, contents=contents).usage_metadata.prompt_token_count
    expect(counted.total_tokens == used, f"{counted.total_tokens} != {used}")
    # What volley counts with --exact-tokens: inline PDF bytes next to text.
    pdf = types.Part.from_bytes(data=b"%PDF-1.4\n%%EOF\n", mime_type="application/pdf")
    rich = [types.Content(role="user", parts=[pdf, types.Part.from_text(text="Summarise it.")])]
    counted = c.models.count_tokens(model=MODEL, contents=rich)
    used = c.models.generate_content(model=MODEL, contents=rich).usage_metadata.prompt_token_count
    expect(counted.total_tokens == used, f"{counted.total_tokens} != {used}")
    e = raises(errors.ClientError, lambda: c.models.count_tokens(model="no-such-model", contents="hi"))
    assert_api_error(e, 404, "NOT_FOUND")


# --- batches -------------------------------------------------------------------------------


@check
def batch_inline_lifecycle() -> None:
    c = client()
    job = c.batches.create(model=MODEL, src=inline("life", 3), config={"display_name": "life"})
    expect(job.name.startswith("batches/") and job.display_name == "life", f"{job}")
    expect(job.state == types.JobState.JOB_STATE_PENDING, f"{job.state}")
    expect(job.model == f"models/{MODEL}" and job.create_time is not None, f"{job.model}")
    done = wait(c, job.name)
    expect(done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None, f"{done.state}")
    responses = done.dest.inlined_responses
    expect([r.metadata["key"] for r in responses] == ["life-0", "life-1", "life-2"], "input order and keys")
    for r in responses:
        expect(r.error is None and r.response.text, f"{r}")
    rt = c.models.generate_content(model=MODEL, contents=[{"role": "user", "parts": [{"text": "Tell me about life 1"}]}])
    expect(rt.text == responses[1].response.text, "batch and real-time answers differ")
    wire = raw(f"/v1/{job.name}")
    expect(wire["done"] is True and wire["metadata"]["state"] == "BATCH_STATE_SUCCEEDED", f"{wire}")
    expect(wire["metadata"]["batchStats"] == {"requestCount": "3", "successfulRequestCount": "3"}, f"{wire['metadata']['batchStats']}")
    expect(wire["response"]["@type"].endswith("v1.GenerateContentBatchOutput"), wire["response"]["@type"])
    expect(wire["response"]["inlinedResponses"] == wire["metadata"]["output"]["inlinedResponses"], "output in both places")


@check
def batch_per_request_errors() -> None:
    c = client()
    src = inline("ok", 1) + [{"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                               "metadata": {"key": "bad"}, "config": {"candidate_count": 2}}]
    done = wait(c, c.batches.create(model=MODEL, src=src).name)
    by_key = {r.metadata["key"]: r for r in done.dest.inlined_responses}
    expect(by_key["ok-0"].response is not None, f"{by_key['ok-0']}")
    expect(by_key["bad"].error is not None and by_key["bad"].error.code == 400, f"{by_key['bad']}")


@check
def batch_from_file() -> None:
    c = client()
    lines = [json.dumps({"key": f"file-{i}", "request": {"contents": [{"parts": [{"text": f"File item {i}"}]}]}})
             for i in range(4)]
    data = ("\n".join(lines) + "\n").encode()
    f = c.files.upload(file=io.BytesIO(data), config={"mime_type": "application/jsonl", "display_name": "requests"})
    expect(f.name.startswith("files/") and f.size_bytes == len(data) and f.display_name == "requests", f"{f}")
    expect(f.source == types.FileSource.UPLOADED and f.download_uri is None and f.sha256_hash, f"{f}")
    job = c.batches.create(model=MODEL, src=f.name, config={"display_name": "from-file"})
    done = wait(c, job.name)
    expect(done.state == types.JobState.JOB_STATE_SUCCEEDED, f"{done.state}")
    out = done.dest.file_name
    expect(out and out.startswith("files/"), f"{done.dest}")
    meta = c.files.get(name=out)
    expect(meta.source == types.FileSource.GENERATED and meta.download_uri, f"{meta}")
    content = c.files.download(file=out)
    got = sorted(json.loads(line)["key"] for line in content.decode().splitlines())
    expect(got == [f"file-{i}" for i in range(4)], f"{got}")
    expect(c.files.download(file=meta) == content, "download by File object")
    e = raises(ValueError, lambda: c.files.download(file=f))
    expect("uploaded" in str(e), f"{e}")
    e = raises(errors.ClientError, lambda: c.files.download(file=f.name))
    assert_api_error(e, 400, "INVALID_ARGUMENT")
    cleanup(c)
    expect(admin("/_sim/stats")["files_stored"] == 0, "everything deleted")


@check
def batch_list_cancel_delete() -> None:
    admin("/_sim/reset", {})
    admin("/_sim/config", {"processing_ms": 60_000})
    try:
        c = client()
        names = [c.batches.create(model=MODEL, src=inline(f"l{i}", 1)).name for i in range(5)]
        first = c.batches.list(config={"page_size": 2})
        expect(first.page_size == 2 and [j.name for j in first.page] == names[:2:-1], "newest first")
        seen = [j.name for j in c.batches.list(config={"page_size": 2})]  # follows nextPageToken
        expect(seen == names[::-1], f"{seen}")
        expect(c.batches.cancel(name=names[0]) is None, "cancel returns nothing")
        cancelled = c.batches.get(name=names[0])
        expect(cancelled.state == types.JobState.JOB_STATE_CANCELLED, f"{cancelled.state}")
        expect(all(r.error is not None for r in cancelled.dest.inlined_responses), "cancelled requests report errors")
        d = c.batches.delete(name=names[1])
        expect(isinstance(d, types.DeleteResourceJob), f"{d}")
        e = raises(errors.ClientError, lambda: c.batches.get(name=names[1]))
        assert_api_error(e, 404, "NOT_FOUND")
        expect(len(list(c.batches.list())) == 4, "deleted batches leave the list")
    finally:
        admin("/_sim/config", {"processing_ms": 300})
    c = client()
    finished = wait(c, c.batches.create(model=MODEL, src=inline("x", 1)).name)
    e = raises(errors.ClientError, lambda: c.batches.cancel(name=finished.name))
    assert_api_error(e, 400, "FAILED_PRECONDITION")


@check
def batch_expired_and_errored() -> None:
    c = client()
    admin("/_sim/config", {"expired_rate": 1.0})
    try:
        job = c.batches.create(model=MODEL, src=inline("exp", 2))
    finally:
        admin("/_sim/config", {"expired_rate": 0.0})
    done = wait(c, job.name)
    expect(done.state == types.JobState.JOB_STATE_EXPIRED and done.dest is None, f"{done}")
    admin("/_sim/config", {"error_rate": 1.0})
    try:
        job = c.batches.create(model=MODEL, src=inline("err", 2))
    finally:
        admin("/_sim/config", {"error_rate": 0.0})
    done = wait(c, job.name)
    expect(done.state == types.JobState.JOB_STATE_SUCCEEDED, f"{done.state}")
    expect(all(r.error is not None and r.error.code == 500 for r in done.dest.inlined_responses), f"{done.dest}")


# --- files ---------------------------------------------------------------------------------


@check
def files_upload_in_chunks_get_list_delete() -> None:
    c = client()
    big = b"x" * (9 * 1024 * 1024)  # two chunks: the first answers `active`
    f = c.files.upload(file=io.BytesIO(big), config={"mime_type": "text/plain", "display_name": "big"})
    expect(f.size_bytes == len(big) and f.state == types.FileState.ACTIVE, f"{f}")
    small = c.files.upload(file=io.BytesIO(b"{}\n"), config={"mime_type": "application/jsonl"})
    got = c.files.get(name=f.name)
    expect(got.name == f.name and got.size_bytes == len(big) and got.expiration_time is not None, f"{got}")
    wire = raw(f"/v1/{f.name}")
    expect(wire["sizeBytes"] == str(len(big)), "sizeBytes is an int64 string")
    names = [x.name for x in c.files.list(config={"page_size": 1})]  # follows nextPageToken
    expect(names == [small.name, f.name], f"{names}")
    c.files.delete(name=f.name)
    e = raises(errors.ClientError, lambda: c.files.get(name=f.name))
    assert_api_error(e, 404, "NOT_FOUND")
    c.files.delete(name=small.name)
    expect(list(c.files.list()) == [], "no file left")


@check
def download_uri_is_served() -> None:
    c = client()
    src = [{"key": "d-0", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}]
    f = c.files.upload(file=io.BytesIO((json.dumps(src[0]) + "\n").encode()), config={"mime_type": "application/jsonl"})
    done = wait(c, c.batches.create(model=MODEL, src=f.name).name)
    meta = c.files.get(name=done.dest.file_name)
    expect(meta.download_uri.startswith(f"{BASE}/download/v1/files/"), f"{meta.download_uri}")
    req = urllib.request.Request(meta.download_uri, headers={"x-goog-api-key": KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        documented = resp.read()
    expect(documented == c.files.download(file=meta.name), "both download paths serve the same bytes")
    expect(json.loads(documented)["key"] == "d-0", f"{documented!r}")
    cleanup(c)


# --- API versions, async, errors ----------------------------------------------------------


@check
def v1beta_api_version() -> None:
    c = client(api_version="v1beta")
    r = c.models.generate_content(model=MODEL, contents="Hello from v1beta")
    expect(bool(r.text), f"{r}")
    f = c.files.upload(file=io.BytesIO(json.dumps({"key": "b-0", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}).encode() + b"\n"),
                       config={"mime_type": "application/jsonl"})
    job = c.batches.create(model=MODEL, src=f.name)
    done = wait(c, job.name)
    expect(done.state == types.JobState.JOB_STATE_SUCCEEDED, f"{done.state}")
    expect(json.loads(c.files.download(file=done.dest.file_name).decode())["key"] == "b-0", "download")
    wire = raw(f"/v1beta/{job.name}")
    expect(wire["metadata"]["@type"].endswith("v1beta.GenerateContentBatch"), wire["metadata"]["@type"])
    expect(c.models.count_tokens(model=MODEL, contents="hi").total_tokens > 0, "count tokens")
    expect(any(j.name == job.name for j in c.batches.list()), "list under v1beta")
    c.batches.delete(name=job.name)
    e = raises(errors.ClientError, lambda: c.batches.get(name=job.name))
    assert_api_error(e, 404, "NOT_FOUND")
    cleanup(c)


@check
def async_client_round_trip() -> None:
    async def run() -> None:
        c = client()
        r = await c.aio.models.generate_content(model=MODEL, contents="async hello")
        expect(bool(r.text), "async generate")
        job = await c.aio.batches.create(model=MODEL, src=inline("async", 2))
        while (job := await c.aio.batches.get(name=job.name)).state != types.JobState.JOB_STATE_SUCCEEDED:
            await asyncio.sleep(0.02)
        expect(len(job.dest.inlined_responses) == 2, "async batch")
        f = await c.aio.files.upload(file=io.BytesIO(b"{}\n"), config={"mime_type": "application/jsonl"})
        await c.aio.files.delete(name=f.name)

    asyncio.run(run())


@check
def errors_key_model_request() -> None:
    admin("/_sim/config", {"api_key": KEY})
    try:
        wrong = client(key="AIza-wrong")
        e = raises(errors.ClientError, lambda: wrong.models.generate_content(model=MODEL, contents="x"))
        assert_api_error(e, 400, "INVALID_ARGUMENT")
        reasons = [d.get("reason") for d in (e.details["error"]["details"] if isinstance(e.details, dict) else [])]
        expect("API_KEY_INVALID" in reasons, f"{e.details}")
        right = client()
        expect(right.models.generate_content(model=MODEL, contents="x").text, "the right key works")
    finally:
        admin("/_sim/config", {"api_key": None})
    c = client()
    e = raises(errors.ClientError, lambda: c.models.generate_content(model="gemini-no-such-model", contents="x"))
    assert_api_error(e, 404, "NOT_FOUND")
    e = raises(errors.ClientError, lambda: c.batches.create(model="gemini-no-such-model", src=inline("m", 1)))
    assert_api_error(e, 404, "NOT_FOUND")
    e = raises(errors.ClientError, lambda: c.models.generate_content(
        model=MODEL, contents="x", config={"response_schema": {"type": "STRING"}}))
    assert_api_error(e, 400, "INVALID_ARGUMENT")


@check
def rate_limits_and_server_errors() -> None:
    before = admin("/_sim/stats")
    c = client()
    admin("/_sim/config", {"rate_limit_every": 1, "retry_after_ms": 50})
    try:
        e = raises(errors.ClientError, lambda: c.batches.create(model=MODEL, src=inline("rl", 1)))
        assert_api_error(e, 429, "RESOURCE_EXHAUSTED")
        details = e.details["error"]["details"]
        delay = [d["retryDelay"] for d in details if d["@type"].endswith("RetryInfo")]
        expect(delay == ["0.050s"], f"{details}")
        expect(e.response.headers.get("retry-after") == "1", f"{e.response.headers}")
        expect(admin("/_sim/stats")["batches_created"] == before["batches_created"], "a faulted create made nothing")
        admin("/_sim/config", {"rate_limit_every": 2})
        retrying = client(retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.05, max_delay=0.2))
        for _ in range(2):  # one of the two calls is faulted and retried by the SDK
            expect(bool(retrying.models.generate_content(model=MODEL, contents="retry me").text), "retried call")
        admin("/_sim/config", {"rate_limit_every": None, "server_error_every": 1})
        e = raises(errors.ServerError, lambda: c.models.generate_content(model=MODEL, contents="x"))
        assert_api_error(e, 503, "UNAVAILABLE")
        e = raises(errors.ServerError, lambda: c.batches.list().page)
        assert_api_error(e, 500, "INTERNAL")
    finally:
        admin("/_sim/config", {"rate_limit_every": None, "server_error_every": None, "retry_after_ms": 1000})


def main() -> int:
    admin("/_sim/reset", {})
    passed = failed = 0
    for name, fn in CHECKS:
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {NAME}.{name}: {type(e).__name__}: {e}")
            if "-v" in sys.argv:
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {NAME}.{name}")
    admin("/_sim/reset", {})
    print(f"{NAME}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
