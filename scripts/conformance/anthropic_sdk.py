#!/usr/bin/env python3
"""Drive `volley sim` with the official `anthropic` Python SDK, unchanged.

Usage: anthropic_sdk.py BASE_URL

Every endpoint the simulator serves is called through the SDK (sync, beta and async
clients), with strict response validation on, so a wire shape the SDK's own models reject
fails the check. Prints one line per check and ends with `anthropic: N passed, M failed`;
exits non-zero on any failure. The simulator is expected to run with a short processing
time (the conformance script uses 300 ms) and is reset between checks through its admin
surface (`/_sim/*`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
import urllib.request
from typing import Any, Callable

import anthropic
from anthropic import Anthropic, AsyncAnthropic
from anthropic.types import CitationCharLocation, Message, MessageTokensCount, TextBlock, ToolUseBlock
from anthropic.types.beta.messages import (
    BetaDeletedMessageBatch,
    BetaMessageBatch,
    BetaMessageBatchCanceledResult,
    BetaMessageBatchErroredResult,
    BetaMessageBatchSucceededResult,
)
from anthropic.types.messages import (
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchCanceledResult,
    MessageBatchErroredResult,
    MessageBatchExpiredResult,
    MessageBatchIndividualResponse,
    MessageBatchSucceededResult,
)

NAME = "anthropic"
MODEL = "claude-haiku-4-5"
BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8089"
BATCH_FIELDS = {
    "id",
    "type",
    "processing_status",
    "request_counts",
    "ended_at",
    "created_at",
    "expires_at",
    "archived_at",
    "cancel_initiated_at",
    "results_url",
}

CHECKS: list[tuple[str, Callable[[], None]]] = []


def check(fn: Callable[[], None]) -> Callable[[], None]:
    CHECKS.append((fn.__name__, fn))
    return fn


# --- helpers -------------------------------------------------------------------------------


def admin(path: str, body: dict[str, Any] | None = None) -> Any:
    """Calls the simulator's admin surface (`/_sim/...`)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{BASE}{path}",
        data=data,
        method="GET" if body is None and path == "/_sim/stats" else "POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def client(**kw: Any) -> Anthropic:
    kw.setdefault("api_key", "sk-test")
    kw.setdefault("max_retries", 0)
    return Anthropic(base_url=BASE, _strict_response_validation=True, **kw)


def params(prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 128,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


def requests(prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"{prefix}-{i}", "params": params(f"Tell me about {prefix} {i}")} for i in range(n)]


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def strict(model: Any) -> None:
    """Re-validates an SDK object against its own pydantic model (the JSONL decoder does not)."""
    type(model).model_validate(model.model_dump(mode="json"))


def wait_ended(batches: Any, batch_id: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        b = batches.retrieve(batch_id)
        if b.processing_status == "ended":
            return b
        expect(time.monotonic() < deadline, f"batch {batch_id} did not end in {timeout}s")
        time.sleep(0.05)


def raises(exc: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except exc as e:  # noqa: PERF203
        return e
    raise AssertionError(f"expected {exc.__name__}")


def assert_api_error(e: BaseException, status: int, kind: str) -> None:
    expect(isinstance(e, anthropic.APIStatusError), f"not an APIStatusError: {e!r}")
    expect(e.status_code == status, f"status {e.status_code} != {status}")
    body = e.body
    expect(isinstance(body, dict) and body.get("type") == "error", f"body {body!r}")
    expect(body["error"]["type"] == kind, f"error type {body['error']['type']} != {kind}")
    expect(bool(e.request_id) and e.request_id.startswith("req_"), f"request id {e.request_id!r}")


# --- Messages ------------------------------------------------------------------------------


@check
def messages_create() -> None:
    raw = client().messages.with_raw_response.create(**params("Write one line about rivers."))
    m = raw.parse()
    expect(isinstance(m, Message), f"{type(m)}")
    expect(m.id.startswith("msg_") and m.type == "message" and m.role == "assistant", m.id)
    expect(m.model == MODEL, m.model)
    expect(isinstance(m.content[0], TextBlock) and m.content[0].text, f"{m.content}")
    expect(m.stop_reason == "end_turn" and m.stop_sequence is None, f"{m.stop_reason}")
    expect(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, f"{m.usage}")
    expect(m.usage.service_tier == "standard", f"{m.usage.service_tier}")
    expect(raw.request_id is not None and raw.request_id.startswith("req_"), f"{raw.request_id}")


@check
def messages_are_deterministic() -> None:
    c = client()
    a = c.messages.create(**params("Same question, same answer?"))
    b = c.messages.create(**params("Same question, same answer?"))
    expect(a.content == b.content and a.usage == b.usage, "answers differ")
    expect(a.id != b.id, "message ids repeat")


@check
def messages_max_tokens_truncates() -> None:
    m = client().messages.create(**{**params("Write a long essay."), "max_tokens": 2})
    expect(m.stop_reason == "max_tokens" and m.usage.output_tokens == 2, f"{m.stop_reason} {m.usage}")


@check
def messages_structured_output() -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": ["spam", "ham"]},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["label", "score", "tags"],
        "additionalProperties": False,
    }
    m = client().messages.create(
        **params("Is this spam?", output_config={"format": {"type": "json_schema", "schema": schema}})
    )
    data = json.loads(m.content[0].text)
    expect(data["label"] == "spam" and isinstance(data["tags"], list), f"{data}")


@check
def messages_tool_use() -> None:
    m = client().messages.create(
        **params(
            "Label this.",
            tools=[
                {
                    "name": "record",
                    "description": "Record a label",
                    "input_schema": {
                        "type": "object",
                        "properties": {"label": {"enum": ["a", "b"]}},
                        "required": ["label"],
                    },
                }
            ],
            tool_choice={"type": "tool", "name": "record"},
        )
    )
    block = m.content[0]
    expect(isinstance(block, ToolUseBlock) and block.name == "record", f"{block}")
    expect(block.input == {"label": "a"} and m.stop_reason == "tool_use", f"{block.input}")


@check
def messages_citations() -> None:
    doc = {
        "type": "document",
        "title": "Facts",
        "citations": {"enabled": True},
        "source": {"type": "text", "media_type": "text/plain", "data": "Water boils at 100 C. Ice melts at 0 C."},
    }
    m = client().messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": [doc, {"type": "text", "text": "When does water boil?"}]}],
    )
    cites = m.content[0].citations
    expect(cites is not None and isinstance(cites[0], CitationCharLocation), f"{cites}")
    expect(cites[0].cited_text == "Water boils at 100 C." and cites[0].document_index == 0, f"{cites[0]}")


@check
def count_tokens_matches_usage() -> None:
    c = client()
    p = params("How many tokens is this?", system="Be brief.")
    counted = c.messages.count_tokens(model=p["model"], messages=p["messages"], system=p["system"])
    expect(isinstance(counted, MessageTokensCount), f"{type(counted)}")
    used = c.messages.create(**p).usage.input_tokens
    expect(counted.input_tokens == used, f"{counted.input_tokens} != {used}")
    # What volley counts with --exact-tokens: a PDF document and a structured-output schema.
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQKJSVFT0YK"}}
    fmt = {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"label": {"type": "string"}},
                                                         "required": ["label"], "additionalProperties": False}}}
    rich = params("x", messages=[{"role": "user", "content": [doc, {"type": "text", "text": "Label it."}]}], output_config=fmt)
    counted = c.messages.count_tokens(model=MODEL, messages=rich["messages"], output_config=fmt)
    used = c.messages.create(**rich).usage.input_tokens
    expect(counted.input_tokens == used, f"{counted.input_tokens} != {used}")
    e = raises(anthropic.BadRequestError, lambda: c.messages.count_tokens(model=MODEL, messages=[]))
    assert_api_error(e, 400, "invalid_request_error")


@check
def messages_invalid_is_bad_request() -> None:
    e = raises(anthropic.BadRequestError, lambda: client().messages.create(**{**params("x"), "max_tokens": 0}))
    assert_api_error(e, 400, "invalid_request_error")


# --- Message Batches -----------------------------------------------------------------------


@check
def batch_lifecycle_and_result_types() -> None:
    c = client()
    reqs = requests("life", 3) + [
        {"custom_id": "invalid-1", "params": {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}},
    ]
    raw = c.messages.batches.with_raw_response.create(requests=reqs)
    expect(set(json.loads(raw.http_response.text)) >= BATCH_FIELDS, "a MessageBatch field is missing")
    b = raw.parse()
    expect(isinstance(b, MessageBatch) and b.id.startswith("msgbatch_"), f"{b}")
    expect(b.processing_status == "in_progress" and b.results_url is None, b.processing_status)
    rc = b.request_counts
    expect((rc.processing, rc.succeeded, rc.errored) == (4, 0, 0), f"{rc}")

    got = c.messages.batches.retrieve(b.id)
    expect(got.id == b.id and got.request_counts.processing in (0, 4), f"{got}")
    ended = wait_ended(c.messages.batches, b.id)
    expect(ended.ended_at is not None and ended.results_url.startswith(BASE), f"{ended.results_url}")
    rc = ended.request_counts
    expect((rc.processing, rc.succeeded, rc.errored) == (0, 3, 1), f"{rc}")

    results = list(c.messages.batches.results(b.id))
    expect(len(results) == 4, f"{len(results)} lines")
    by_id = {r.custom_id: r.result for r in results}
    for r in results:
        expect(isinstance(r, MessageBatchIndividualResponse), f"{type(r)}")
        strict(r)
    for i in range(3):
        res = by_id[f"life-{i}"]
        expect(isinstance(res, MessageBatchSucceededResult), f"{type(res)}")
        expect(res.message.usage.service_tier == "batch", f"{res.message.usage}")
    err = by_id["invalid-1"]
    expect(isinstance(err, MessageBatchErroredResult), f"{type(err)}")
    expect(err.error.type == "error" and err.error.error.type == "invalid_request_error", f"{err.error}")


@check
def batch_results_match_realtime_answers() -> None:
    c = client()
    b = c.messages.batches.create(requests=requests("same", 2))
    wait_ended(c.messages.batches, b.id)
    for r in c.messages.batches.results(b.id):
        i = r.custom_id.split("-")[1]
        rt = c.messages.create(**params(f"Tell me about same {i}"))
        expect(r.result.message.content == rt.content, "batch and real-time answers differ")


@check
def batch_list_auto_paging() -> None:
    admin("/_sim/reset", {})
    c = client()
    ids = [c.messages.batches.create(requests=requests(f"page{i}", 1)).id for i in range(5)]
    first = c.messages.batches.list(limit=2)
    expect(first.has_more is True and len(first.data) == 2, f"{first.has_more} {len(first.data)}")
    expect(first.first_id == ids[-1] and first.last_id == ids[-2], "first page is not newest first")
    seen = [b.id for b in c.messages.batches.list(limit=2)]  # iterating auto-pages
    expect(seen == list(reversed(ids)), f"{seen} != newest-first {ids[::-1]}")


@check
def batch_list_before_id_pages_backwards() -> None:
    admin("/_sim/reset", {})
    c = client()
    ids = [c.messages.batches.create(requests=requests(f"back{i}", 1)).id for i in range(4)]
    page = c.messages.batches.list(limit=1, before_id=ids[0])
    seen = [b.id for b in page]  # follows before_id=first_id until has_more is false
    expect(set(seen) == set(ids[1:]), f"{seen}")
    empty = c.messages.batches.list(after_id=ids[0])
    expect(empty.data == [] and empty.first_id is None and empty.has_more is False, f"{empty}")


@check
def batch_cancel_gives_canceled_results() -> None:
    c = client()
    b = c.messages.batches.create(requests=requests("cancel", 5))
    canceled = c.messages.batches.cancel(b.id)
    expect(canceled.processing_status == "canceling", canceled.processing_status)
    expect(canceled.cancel_initiated_at is not None, "cancel_initiated_at missing")
    ended = wait_ended(c.messages.batches, b.id)
    rc = ended.request_counts
    expect(rc.canceled + rc.succeeded == 5 and rc.canceled >= 1, f"{rc}")
    kinds = [type(r.result) for r in c.messages.batches.results(b.id)]
    expect(kinds.count(MessageBatchCanceledResult) == rc.canceled, f"{kinds}")


@check
def batch_cancel_ended_is_bad_request() -> None:
    c = client()
    b = c.messages.batches.create(requests=requests("late", 1))
    wait_ended(c.messages.batches, b.id)
    e = raises(anthropic.BadRequestError, lambda: c.messages.batches.cancel(b.id))
    assert_api_error(e, 400, "invalid_request_error")


@check
def batch_delete() -> None:
    c = client()
    b = c.messages.batches.create(requests=requests("del", 1))
    e = raises(anthropic.BadRequestError, lambda: c.messages.batches.delete(b.id))
    assert_api_error(e, 400, "invalid_request_error")
    wait_ended(c.messages.batches, b.id)
    d = c.messages.batches.delete(b.id)
    expect(isinstance(d, DeletedMessageBatch) and d.id == b.id and d.type == "message_batch_deleted", f"{d}")
    e = raises(anthropic.NotFoundError, lambda: c.messages.batches.retrieve(b.id))
    assert_api_error(e, 404, "not_found_error")


@check
def batch_expired_and_errored_rates() -> None:
    c = client()
    admin("/_sim/config", {"expired_rate": 1.0})
    try:
        b = c.messages.batches.create(requests=requests("exp", 2))
    finally:
        admin("/_sim/config", {"expired_rate": 0.0})
    wait_ended(c.messages.batches, b.id)
    res = [r.result for r in c.messages.batches.results(b.id)]
    expect(all(isinstance(r, MessageBatchExpiredResult) for r in res), f"{res}")
    admin("/_sim/config", {"error_rate": 1.0})
    try:
        b = c.messages.batches.create(requests=requests("err", 2))
    finally:
        admin("/_sim/config", {"error_rate": 0.0})
    wait_ended(c.messages.batches, b.id)
    res = [r.result for r in c.messages.batches.results(b.id)]
    expect(all(isinstance(r, MessageBatchErroredResult) and r.error.error.type == "api_error" for r in res), f"{res}")


# --- Beta client ---------------------------------------------------------------------------


@check
def beta_batches_create_retrieve_list() -> None:
    c = client()
    b = c.beta.messages.batches.create(requests=requests("beta", 2))
    expect(isinstance(b, BetaMessageBatch) and b.processing_status == "in_progress", f"{b}")
    expect(c.beta.messages.batches.retrieve(b.id).id == b.id, "retrieve")
    expect(any(x.id == b.id for x in c.beta.messages.batches.list(limit=3)), "list")


@check
def beta_batches_results_cancel_delete() -> None:
    c = client()
    b = c.beta.messages.batches.create(requests=requests("betaok", 2))
    wait_ended(c.beta.messages.batches, b.id)
    res = [r.result for r in c.beta.messages.batches.results(b.id)]
    expect(len(res) == 2 and all(isinstance(r, BetaMessageBatchSucceededResult) for r in res), f"{res}")
    d = c.beta.messages.batches.delete(b.id)
    expect(isinstance(d, BetaDeletedMessageBatch), f"{d}")

    x = c.beta.messages.batches.create(
        requests=requests("betax", 2)
        + [{"custom_id": "betabad", "params": {**params("x"), "stream": True}}]
    )
    canceled = c.beta.messages.batches.cancel(x.id)
    expect(canceled.processing_status == "canceling", canceled.processing_status)
    wait_ended(c.beta.messages.batches, x.id)
    kinds = {type(r.result) for r in c.beta.messages.batches.results(x.id)}
    expect(kinds <= {BetaMessageBatchCanceledResult, BetaMessageBatchErroredResult,
                     BetaMessageBatchSucceededResult}, f"{kinds}")
    expect(BetaMessageBatchCanceledResult in kinds, f"{kinds}")


# --- Async client --------------------------------------------------------------------------


@check
def async_client_batch_round_trip() -> None:
    async def run() -> None:
        c = AsyncAnthropic(base_url=BASE, api_key="sk-test", max_retries=0, _strict_response_validation=True)
        b = await c.messages.batches.create(requests=requests("async", 2))
        while (b := await c.messages.batches.retrieve(b.id)).processing_status != "ended":
            await asyncio.sleep(0.05)
        lines = [r async for r in await c.messages.batches.results(b.id)]
        expect(len(lines) == 2 and all(isinstance(r.result, MessageBatchSucceededResult) for r in lines), "async")
        m = await c.messages.create(**params("async hello"))
        expect(isinstance(m, Message), "async message")
        await c.close()

    asyncio.run(run())


# --- Errors --------------------------------------------------------------------------------


@check
def error_not_found() -> None:
    e = raises(anthropic.NotFoundError, lambda: client().messages.batches.retrieve("msgbatch_does_not_exist"))
    assert_api_error(e, 404, "not_found_error")


@check
def error_bad_custom_id() -> None:
    bad = [{"custom_id": "not valid!", "params": params("x")}]
    e = raises(anthropic.BadRequestError, lambda: client().messages.batches.create(requests=bad))
    assert_api_error(e, 400, "invalid_request_error")
    expect("requests.0.custom_id" in e.body["error"]["message"], e.body["error"]["message"])


@check
def error_duplicate_custom_id() -> None:
    dup = [{"custom_id": "twice", "params": params("x")}] * 2
    e = raises(anthropic.BadRequestError, lambda: client().messages.batches.create(requests=dup))
    assert_api_error(e, 400, "invalid_request_error")


@check
def error_missing_version() -> None:
    c = client(default_headers={"anthropic-version": anthropic.omit})
    e = raises(anthropic.BadRequestError, lambda: c.messages.batches.list())
    assert_api_error(e, 400, "invalid_request_error")


@check
def error_wrong_key() -> None:
    admin("/_sim/config", {"api_key": "sk-only-this"})
    try:
        e = raises(anthropic.AuthenticationError, lambda: client(api_key="sk-wrong").messages.batches.list())
        assert_api_error(e, 401, "authentication_error")
        client(api_key="sk-only-this").messages.batches.list()
    finally:
        admin("/_sim/config", {"api_key": None})


@check
def rate_limit_is_retried_by_the_sdk() -> None:
    before = admin("/_sim/stats")["faults_injected"]
    admin("/_sim/config", {"rate_limit_every": 2, "retry_after_ms": 50})
    try:
        c = client(max_retries=2)
        # Calls 1 and 2 (the second answered 429, then retried as call 3).
        c.messages.create(**params("first"))
        m = c.messages.create(**params("second"))
        expect(isinstance(m, Message), "retried call failed")
        after = admin("/_sim/stats")["faults_injected"]
        expect(after == before + 1, f"faults {before} -> {after}")
        # Without retries the 429 surfaces, with its retry-after headers.
        admin("/_sim/config", {"rate_limit_every": 1})
        e = raises(anthropic.RateLimitError, lambda: client().messages.batches.list())
        assert_api_error(e, 429, "rate_limit_error")
        expect(e.response.headers.get("retry-after") == "1", f"{e.response.headers}")
        expect(e.response.headers.get("retry-after-ms") == "50", f"{e.response.headers}")
    finally:
        admin("/_sim/config", {"rate_limit_every": None, "retry_after_ms": 1000})


@check
def overloaded_and_server_errors() -> None:
    admin("/_sim/config", {"server_error_every": 1, "retry_after_ms": 10})
    try:
        e = raises(anthropic.OverloadedError, lambda: client().messages.batches.create(requests=requests("over", 1)))
        assert_api_error(e, 529, "overloaded_error")
        e = raises(anthropic.InternalServerError, lambda: client().messages.batches.list())
        assert_api_error(e, 500, "api_error")
    finally:
        admin("/_sim/config", {"server_error_every": None, "retry_after_ms": 1000})
    expect(admin("/_sim/stats")["batches_created"] >= 0, "stats readable")
    # A faulted create created nothing: no batch has custom_id over-0.
    c = client()
    for b in c.messages.batches.list(limit=100):
        if b.processing_status == "ended":
            for r in c.messages.batches.results(b.id):
                expect(r.custom_id != "over-0", "a faulted create left a batch behind")


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
