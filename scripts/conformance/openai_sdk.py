#!/usr/bin/env python3
"""Drive `volley sim` with the official `openai` Python SDK, unchanged.

Usage: openai_sdk.py BASE_URL

Every OpenAI endpoint the simulator serves (Files, Batches, Chat Completions, Responses) is
called through the SDK (sync and async clients) with strict response validation on, so a
wire shape the SDK's own models reject fails the check. Prints one line per check and ends
with `openai: N passed, M failed`; exits non-zero on any failure. The simulator is expected
to run with a short processing time (the conformance script uses 300 ms) and is reset between
checks through its admin surface (`/_sim/*`).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
import traceback
import urllib.request
from typing import Any, Callable, Optional

import openai
from openai import AsyncOpenAI, OpenAI
from openai.types import Batch, FileDeleted, FileObject
from openai.types.chat import ChatCompletion
from openai.types.responses import InputTokenCountResponse, Response
from pydantic import BaseModel

NAME = "openai"
MODEL = "gpt-4o-mini"
BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8089"
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
BATCH_FIELDS = {
    "id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
    "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
    "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
    "request_counts", "metadata",
}

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


def client(**kw: Any) -> OpenAI:
    kw.setdefault("api_key", "sk-test")
    kw.setdefault("max_retries", 0)
    return OpenAI(base_url=f"{BASE}/v1", _strict_response_validation=True, **kw)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def raises(exc: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except exc as e:  # noqa: PERF203
        return e
    raise AssertionError(f"expected {exc.__name__}")


def assert_api_error(e: BaseException, status: int, param: Optional[str] = None, code: Optional[str] = None) -> None:
    expect(isinstance(e, openai.APIStatusError), f"not an APIStatusError: {e!r}")
    expect(e.status_code == status, f"status {e.status_code} != {status}")
    body = e.body
    expect(isinstance(body, dict) and {"message", "type", "param", "code"} <= set(body), f"body {body!r}")
    if param is not None:
        expect(body["param"] == param, f"param {body['param']!r} != {param!r}")
    if code is not None:
        expect(body["code"] == code, f"code {body['code']!r} != {code!r}")
    expect(bool(e.request_id) and e.request_id.startswith("req_"), f"request id {e.request_id!r}")


def chat_body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_completion_tokens": 128, **extra}


def chat_line(custom_id: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": chat_body(prompt, **extra)}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def upload(c: OpenAI, lines: list[dict[str, Any]], name: str = "input.jsonl") -> FileObject:
    return c.files.create(file=(name, io.BytesIO(jsonl(lines))), purpose="batch")


def wait(c: OpenAI, batch_id: str, timeout: float = 15.0) -> tuple[Batch, list[str]]:
    """Polls until the batch is final; returns it and the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        b = c.batches.retrieve(batch_id)
        if not seen or seen[-1] != b.status:
            seen.append(b.status)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            return b, seen
        expect(time.monotonic() < deadline, f"batch {batch_id} still {b.status} after {timeout}s")
        time.sleep(0.01)


def lines_of(c: OpenAI, file_id: Optional[str]) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = c.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def cleanup(c: OpenAI) -> None:
    for f in c.files.list():
        c.files.delete(f.id)


# --- Files ---------------------------------------------------------------------------------


@check
def files_create_retrieve_content_delete() -> None:
    c = client()
    data = jsonl([chat_line("f-1", "hello")])
    raw = c.files.with_raw_response.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    f = raw.parse()
    expect(isinstance(f, FileObject) and f.id.startswith("file-"), f"{f}")
    expect(f.object == "file" and f.purpose == "batch" and f.status == "processed", f"{f}")
    expect(f.bytes == len(data) and f.filename == "in.jsonl", f"{f.bytes} {f.filename}")
    expect(f.expires_at == f.created_at + 30 * 24 * 3600, "batch uploads expire after 30 days")
    expect(raw.request_id is not None and raw.request_id.startswith("req_"), f"{raw.request_id}")
    expect(c.files.retrieve(f.id) == f, "retrieve differs from create")
    expect(c.files.content(f.id).read() == data, "content differs from upload")
    expect(c.files.wait_for_processing(f.id, poll_interval=0.01).status == "processed", "processed")
    d = c.files.delete(f.id)
    expect(isinstance(d, FileDeleted) and d.deleted and d.id == f.id, f"{d}")
    assert_api_error(raises(openai.NotFoundError, lambda: c.files.retrieve(f.id)), 404)
    assert_api_error(raises(openai.NotFoundError, lambda: c.files.delete(f.id)), 404)


@check
def files_list_filters_orders_and_pages() -> None:
    admin("/_sim/reset", {})
    c = client()
    ids = [upload(c, [chat_line(f"l{i}", "x")], f"l{i}.jsonl").id for i in range(3)]
    other = c.files.create(file=("notes.txt", io.BytesIO(b"hi")), purpose="user_data")
    first = c.files.list(purpose="batch", limit=2)
    expect(len(first.data) == 2 and first.has_more, f"{len(first.data)} {first.has_more}")
    expect([f.id for f in first.data] == ids[:0:-1], "newest first")
    every = [f.id for f in c.files.list(purpose="batch", limit=2)]  # auto-pages with `after`
    expect(every == ids[::-1], f"{every}")
    asc = [f.id for f in c.files.list(order="asc")]
    expect(asc == ids + [other.id], f"{asc}")
    expect([f.id for f in c.files.list(purpose="user_data")] == [other.id], "purpose filter")
    cleanup(c)
    expect(c.files.list().data == [], "everything deleted")


@check
def files_batch_purpose_needs_jsonl() -> None:
    c = client()
    e = raises(openai.BadRequestError, lambda: c.files.create(file=("in.txt", io.BytesIO(b"{}")), purpose="batch"))
    assert_api_error(e, 400, param="file")
    e = raises(openai.BadRequestError, lambda: c.files.create(file=("a.jsonl", io.BytesIO(b"{}")), purpose="nope"))  # type: ignore[arg-type]
    assert_api_error(e, 400, param="purpose")


@check
def files_expires_after() -> None:
    c = client()
    f = c.files.create(
        file=("e.jsonl", io.BytesIO(jsonl([chat_line("e", "x")]))),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    expect(f.expires_at == f.created_at + 3600, f"{f.created_at} {f.expires_at}")
    c.files.delete(f.id)


# --- Batches -------------------------------------------------------------------------------


@check
def batch_chat_lifecycle() -> None:
    c = client()
    lines = [chat_line(f"life-{i}", f"Tell me about item {i}") for i in range(4)]
    lines.append({"custom_id": "bad-body", "method": "POST", "url": CHAT,
                  "body": {"model": MODEL, "max_completion_tokens": 5}})
    f = upload(c, lines)
    raw = c.batches.with_raw_response.create(
        input_file_id=f.id, endpoint=CHAT, completion_window="24h", metadata={"run": "conformance"}
    )
    expect(set(json.loads(raw.http_response.text)) >= BATCH_FIELDS, "a Batch field is missing")
    b = raw.parse()
    expect(isinstance(b, Batch) and b.id.startswith("batch_"), f"{b}")
    expect(b.status == "validating" and b.endpoint == CHAT and b.completion_window == "24h", b.status)
    rc = b.request_counts
    expect(rc is not None and (rc.total, rc.completed, rc.failed) == (0, 0, 0), f"{rc}")
    expect(b.expires_at == b.created_at + 24 * 3600, "expires 24h after creation")
    expect(b.metadata == {"run": "conformance"} and b.output_file_id is None, f"{b}")
    done, seen = wait(c, b.id)
    expect(seen[-1] == "completed", f"{seen}")
    order = ["validating", "in_progress", "finalizing", "completed"]
    expect([s for s in order if s in seen] == seen, f"status flow {seen}")
    rc = done.request_counts
    expect((rc.total, rc.completed, rc.failed) == (5, 4, 1), f"{rc}")
    expect(done.completed_at is not None and done.in_progress_at is not None and done.finalizing_at is not None, "timestamps")
    expect(done.failed_at is None and done.cancelled_at is None and done.errors is None, "null fields")
    expect(done.usage is not None and done.usage.input_tokens > 0 and done.usage.output_tokens > 0, f"{done.usage}")
    out = lines_of(c, done.output_file_id)
    expect(sorted(line["custom_id"] for line in out) == [f"life-{i}" for i in range(4)], f"{out}")
    total_out = 0
    for line in out:
        expect(line["error"] is None and line["id"].startswith("batch_req_"), f"{line}")
        expect(line["response"]["status_code"] == 200 and line["response"]["request_id"], f"{line}")
        cc = ChatCompletion.model_validate(line["response"]["body"], strict=False)
        expect(cc.choices[0].message.content and cc.choices[0].finish_reason == "stop", f"{cc}")
        u = cc.usage
        expect(u is not None and u.total_tokens == u.prompt_tokens + u.completion_tokens, f"{u}")
        expect(u.prompt_tokens_details.cached_tokens == 0 and u.completion_tokens_details.reasoning_tokens == 0, f"{u}")
        total_out += u.completion_tokens
    expect(done.usage.output_tokens == total_out, f"batch usage {done.usage.output_tokens} != {total_out}")
    err = lines_of(c, done.error_file_id)
    expect(len(err) == 1 and err[0]["custom_id"] == "bad-body", f"{err}")
    resp = err[0]["response"]
    expect(resp["status_code"] == 400 and resp["body"]["error"]["param"] == "messages", f"{resp}")
    out_file = c.files.retrieve(done.output_file_id)
    expect(out_file.purpose == "batch_output" and out_file.bytes > 0, f"{out_file}")
    for fid in (f.id, done.output_file_id, done.error_file_id):
        c.files.delete(fid)


@check
def batch_answers_match_realtime() -> None:
    c = client()
    f = upload(c, [chat_line("same-0", "Same question, same answer?")])
    b = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    done, _ = wait(c, b.id)
    body = lines_of(c, done.output_file_id)[0]["response"]["body"]
    rt = c.chat.completions.create(**chat_body("Same question, same answer?"))
    expect(rt.choices[0].message.content == body["choices"][0]["message"]["content"], "answers differ")
    expect(rt.usage.prompt_tokens == body["usage"]["prompt_tokens"], "prompt tokens differ")
    cleanup(c)


@check
def batch_responses_endpoint() -> None:
    c = client()
    line = {"custom_id": "resp-1", "method": "POST", "url": RESPONSES,
            "body": {"model": MODEL, "input": "Say hello.", "instructions": "Be brief."}}
    f = upload(c, [line])
    b = c.batches.create(input_file_id=f.id, endpoint=RESPONSES, completion_window="24h")
    done, _ = wait(c, b.id)
    expect(done.status == "completed" and done.endpoint == RESPONSES, done.status)
    out = lines_of(c, done.output_file_id)
    r = Response.model_validate(out[0]["response"]["body"])
    expect(r.output_text and r.status == "completed", f"{r}")
    expect(r.usage is not None and r.usage.input_tokens_details.cache_write_tokens == 0, f"{r.usage}")
    cleanup(c)


@check
def batch_list_auto_paging() -> None:
    admin("/_sim/reset", {})
    c = client()
    f = upload(c, [chat_line("p", "x")])
    ids = [c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h").id for _ in range(5)]
    first = c.batches.list(limit=2)
    expect(first.has_more and [b.id for b in first.data] == ids[:2:-1], "newest first")
    seen = [b.id for b in c.batches.list(limit=2)]  # auto-pages with after=<last id>
    expect(seen == ids[::-1], f"{seen}")
    tail = c.batches.list(after=ids[1])
    expect([b.id for b in tail.data] == [ids[0]] and not tail.has_more, f"{tail}")
    for b in ids:
        wait(c, b)
    cleanup(c)


@check
def batch_cancel() -> None:
    c = client()
    f = upload(c, [chat_line(f"c-{i}", "x") for i in range(5)])
    b = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    cancelling = c.batches.cancel(b.id)
    expect(cancelling.status == "cancelling" and cancelling.cancelling_at is not None, cancelling.status)
    expect(c.batches.cancel(b.id).status in ("cancelling", "cancelled"), "cancelling twice is harmless")
    done, _ = wait(c, b.id)
    expect(done.status == "cancelled" and done.cancelled_at is not None, done.status)
    err = lines_of(c, done.error_file_id)
    expect(len(err) == 5 and all(e["response"] is None and e["error"]["code"] == "batch_cancelled" for e in err), f"{err}")
    expect(done.output_file_id is None, "no request ran")
    finished = completed_batch(c)
    e = raises(openai.ConflictError, lambda: c.batches.cancel(finished))
    assert_api_error(e, 409)
    cleanup(c)


def completed_batch(c: OpenAI) -> str:
    f = upload(c, [chat_line("done", "x")])
    b = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    return wait(c, b.id)[0].id


@check
def batch_invalid_file_fails_with_line_errors() -> None:
    c = client()
    lines = [chat_line("a", "x"), chat_line("a", "y"), {**chat_line("b", "z"), "url": RESPONSES}]
    f = upload(c, lines)
    b = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    done, seen = wait(c, b.id)
    expect(done.status == "failed" and done.failed_at is not None, f"{seen}")
    errors = done.errors.data if done.errors else []
    got = [(e.code, e.line, e.param) for e in errors]
    expect(("duplicate_custom_id", 2, "custom_id") in got and ("url_mismatch", 3, "url") in got, f"{got}")
    rc = done.request_counts
    expect((rc.total, rc.completed, rc.failed) == (0, 0, 0), f"{rc}")
    expect(done.output_file_id is None and done.error_file_id is None, "no result files")
    bad = c.files.create(file=("bad.jsonl", io.BytesIO(b"{not json\n")), purpose="batch")
    done, _ = wait(c, c.batches.create(input_file_id=bad.id, endpoint=CHAT, completion_window="24h").id)
    expect(done.errors.data[0].code == "invalid_json_line" and done.errors.data[0].line == 1, f"{done.errors}")
    cleanup(c)


@check
def batch_enqueued_token_limit() -> None:
    c = client()
    admin("/_sim/config", {"enqueued_token_limit": 10})
    try:
        f = upload(c, [chat_line("t", "A prompt that is certainly longer than ten tokens in total.")])
        b = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
        expect(b.status == "validating", "the create itself succeeds")
        done, _ = wait(c, b.id)
    finally:
        admin("/_sim/config", {"enqueued_token_limit": None})
    expect(done.status == "failed", done.status)
    e = done.errors.data[0]
    expect(e.code == "token_limit_exceeded" and e.line is None and e.param is None, f"{e}")
    cleanup(c)


@check
def batch_expired_and_errored() -> None:
    c = client()
    f = upload(c, [chat_line(f"x-{i}", "x") for i in range(3)])
    admin("/_sim/config", {"expired_rate": 1.0})
    try:
        b = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    finally:
        admin("/_sim/config", {"expired_rate": 0.0})
    done, _ = wait(c, b.id)
    expect(done.status == "expired" and done.expired_at is not None and done.output_file_id is None, f"{done}")
    err = lines_of(c, done.error_file_id)
    expect(all(e["response"] is None and e["error"]["code"] == "batch_expired" for e in err) and len(err) == 3, f"{err}")
    admin("/_sim/config", {"error_rate": 1.0})
    try:
        b = c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    finally:
        admin("/_sim/config", {"error_rate": 0.0})
    done, _ = wait(c, b.id)
    expect(done.status == "completed" and done.output_file_id is None, "every line failed: no output file")
    rc = done.request_counts
    expect((rc.total, rc.completed, rc.failed) == (3, 0, 3), f"{rc}")
    err = lines_of(c, done.error_file_id)
    expect(all(e["response"]["status_code"] == 500 and e["error"] is None for e in err), f"{err}")
    cleanup(c)


@check
def batch_create_validation() -> None:
    c = client()
    f = upload(c, [chat_line("v", "x")])
    too_many = {f"k{i}": "v" for i in range(17)}
    e = raises(openai.BadRequestError, lambda: c.batches.create(
        input_file_id=f.id, endpoint=CHAT, completion_window="24h", metadata=too_many))
    assert_api_error(e, 400, param="metadata")
    e = raises(openai.BadRequestError, lambda: c.batches.create(
        input_file_id=f.id, endpoint=CHAT, completion_window="48h"))  # type: ignore[arg-type]
    assert_api_error(e, 400, param="completion_window")
    e = raises(openai.NotFoundError, lambda: c.batches.create(
        input_file_id="file-nope", endpoint=CHAT, completion_window="24h"))
    assert_api_error(e, 404)
    assert_api_error(raises(openai.NotFoundError, lambda: c.batches.retrieve("batch_nope")), 404)
    cleanup(c)


@check
def nothing_left_behind() -> None:
    c = client()
    f = upload(c, [chat_line("n", "x")])
    done, _ = wait(c, c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h").id)
    expect(admin("/_sim/stats")["files_stored"] >= 2, "input and output files are held")
    for fid in (f.id, done.output_file_id):
        c.files.delete(fid)
    expect(admin("/_sim/stats")["files_stored"] == 0, f"{admin('/_sim/files')}")


# --- Chat Completions and Responses ------------------------------------------------------


@check
def chat_completion() -> None:
    raw = client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    )
    cc = raw.parse()
    expect(isinstance(cc, ChatCompletion) and cc.id.startswith("chatcmpl-") and cc.object == "chat.completion", f"{cc}")
    m = cc.choices[0].message
    expect(m.role == "assistant" and m.content and m.refusal is None, f"{m}")
    u = cc.usage
    expect(u.prompt_tokens > 0 and u.completion_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens, f"{u}")
    expect(raw.request_id is not None and raw.request_id.startswith("req_"), f"{raw.request_id}")


@check
def chat_structured_output_and_bounds() -> None:
    class Label(BaseModel):
        label: str
        score: float
        tags: list[str]

    c = client()
    parsed = c.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "Label this."}], response_format=Label)
    expect(isinstance(parsed.choices[0].message.parsed, Label), f"{parsed.choices[0].message}")
    cut = c.chat.completions.create(**chat_body("Write a long essay.", max_completion_tokens=2))
    expect(cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2, f"{cut}")
    legacy = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=3)
    expect(legacy.usage.completion_tokens <= 3, f"{legacy.usage}")
    obj = c.chat.completions.create(**chat_body("Answer in JSON.", response_format={"type": "json_object"}))
    expect(isinstance(json.loads(obj.choices[0].message.content), dict), "json_object answers are JSON")


@check
def responses_create_and_parse() -> None:
    class Answer(BaseModel):
        answer: str
        confidence: float

    c = client()
    r = c.responses.create(model=MODEL, input="Say hello.", instructions="Be brief.", metadata={"k": "v"})
    expect(isinstance(r, Response) and r.id.startswith("resp_") and r.status == "completed", f"{r}")
    expect(r.output_text and r.instructions == "Be brief." and r.metadata == {"k": "v"}, f"{r}")
    u = r.usage
    expect(u.input_tokens > 0 and u.input_tokens_details.cache_write_tokens == 0 and u.output_tokens_details.reasoning_tokens == 0, f"{u}")
    p = c.responses.parse(model=MODEL, input=[{"role": "user", "content": [{"type": "input_text", "text": "Rate it."}]}], text_format=Answer)
    expect(isinstance(p.output_parsed, Answer), f"{p.output_parsed}")
    cut = c.responses.create(model=MODEL, input="Write a long essay about rivers and seas.", max_output_tokens=16,
                             text={"format": {"type": "json_schema", "name": "essay", "strict": True, "schema": {
                                 "type": "object", "properties": {"paragraphs": {"type": "array", "minItems": 20, "items": {"type": "string", "minLength": 30}}},
                                 "required": ["paragraphs"], "additionalProperties": False}}})
    expect(cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens", f"{cut.status}")
    expect(cut.usage.output_tokens == 16, f"{cut.usage}")
    e = raises(openai.BadRequestError, lambda: c.responses.create(model=MODEL, input="x", max_output_tokens=5))
    assert_api_error(e, 400, param="max_output_tokens", code="integer_below_min_value")


@check
def responses_input_tokens_count_matches_usage() -> None:
    c = client()
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"], "additionalProperties": False}
    text = {"format": {"type": "json_schema", "name": "label", "strict": True, "schema": schema}}
    pdf = "data:application/pdf;base64,JVBERi0xLjQKJSVFT0YK"
    items = [{"role": "user", "content": [{"type": "input_file", "filename": "a.pdf", "file_data": pdf},
                                          {"type": "input_text", "text": "Label this document."}]}]
    counted = c.responses.input_tokens.count(model=MODEL, instructions="Be brief.", input=items, text=text)
    expect(isinstance(counted, InputTokenCountResponse) and counted.object == "response.input_tokens", f"{counted}")
    used = c.responses.create(model=MODEL, instructions="Be brief.", input=items, text=text).usage.input_tokens
    expect(counted.input_tokens == used, f"{counted.input_tokens} != {used}")
    # The Chat Completions form of the same request (what volley batches) is billed the same.
    chat = c.chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf", "file_data": pdf}},
                                     {"type": "text", "text": "Label this document."}]}],
        response_format={"type": "json_schema", "json_schema": {"name": "label", "strict": True, "schema": schema}})
    expect(chat.usage.prompt_tokens == counted.input_tokens, f"{chat.usage.prompt_tokens} != {counted.input_tokens}")
    e = raises(openai.BadRequestError, lambda: c.responses.input_tokens.count(model=MODEL))
    assert_api_error(e, 400, param="input")


# --- Errors, retries, async ----------------------------------------------------------------


@check
def errors_bad_request_and_not_found() -> None:
    c = client()
    e = raises(openai.BadRequestError, lambda: c.chat.completions.create(**chat_body("x", max_completion_tokens=0)))
    assert_api_error(e, 400, param="max_completion_tokens", code="integer_below_min_value")
    e = raises(openai.BadRequestError, lambda: c.chat.completions.create(model=MODEL, messages=[]))
    assert_api_error(e, 400, param="messages")
    e = raises(openai.NotFoundError, lambda: c.post("/nope", cast_to=object, body={}))
    assert_api_error(e, 404)


@check
def errors_authentication() -> None:
    admin("/_sim/config", {"api_key": "sk-only-this"})
    try:
        e = raises(openai.AuthenticationError, lambda: client(api_key="sk-wrong").files.list())
        assert_api_error(e, 401, code="invalid_api_key")
        expect("sk-wrong" not in str(e.body), "the key is not echoed")
        client(api_key="sk-only-this").files.list()
    finally:
        admin("/_sim/config", {"api_key": None})


@check
def rate_limit_is_retried_by_the_sdk() -> None:
    before = admin("/_sim/stats")
    admin("/_sim/config", {"rate_limit_every": 2, "retry_after_ms": 50})
    try:
        c = client(max_retries=2)
        c.files.list()
        f = c.files.create(file=("r.jsonl", io.BytesIO(jsonl([chat_line("r", "x")]))), purpose="batch")
        after = admin("/_sim/stats")
        expect(after["faults_injected"] == before["faults_injected"] + 1, f"{before} -> {after}")
        expect(after["files_uploaded"] == before["files_uploaded"] + 1, "the faulted upload stored nothing")
        admin("/_sim/config", {"rate_limit_every": 1})
        e = raises(openai.RateLimitError, lambda: client().batches.list())
        assert_api_error(e, 429, code="rate_limit_exceeded")
        expect(e.response.headers.get("retry-after-ms") == "50", f"{e.response.headers}")
    finally:
        admin("/_sim/config", {"rate_limit_every": None, "retry_after_ms": 1000})
    client().files.delete(f.id)


@check
def server_errors() -> None:
    admin("/_sim/config", {"server_error_every": 1, "retry_after_ms": 10})
    try:
        e = raises(openai.InternalServerError, lambda: client().batches.list())
        expect(e.status_code == 503, f"{e.status_code}")
        e = raises(openai.InternalServerError, lambda: client().files.list())
        expect(e.status_code == 500, f"{e.status_code}")
    finally:
        admin("/_sim/config", {"server_error_every": None, "retry_after_ms": 1000})


@check
def async_client_round_trip() -> None:
    async def run() -> None:
        c = AsyncOpenAI(base_url=f"{BASE}/v1", api_key="sk-test", max_retries=0, _strict_response_validation=True)
        f = await c.files.create(file=("a.jsonl", io.BytesIO(jsonl([chat_line("async", "x")]))), purpose="batch")
        b = await c.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
        while (b := await c.batches.retrieve(b.id)).status != "completed":
            await asyncio.sleep(0.02)
        content = await c.files.content(b.output_file_id)
        expect(json.loads(content.text.splitlines()[0])["custom_id"] == "async", "async output")
        ids = [x.id async for x in c.files.list()]
        for fid in ids:
            await c.files.delete(fid)
        cc = await c.chat.completions.create(**chat_body("async hello"))
        expect(isinstance(cc, ChatCompletion), "async chat")
        await c.close()

    asyncio.run(run())


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
