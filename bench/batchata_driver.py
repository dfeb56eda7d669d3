"""Runs a volley input file through batchata, the way batchata's README drives it.

Started by `bench/run` with the throwaway venv's interpreter (Python 3.12, batchata from PyPI),
with ANTHROPIC_BASE_URL / OPENAI_BASE_URL (and keys) pointing at a standalone `volley sim`.

    python batchata_driver.py INPUT.jsonl RESULTS_DIR ITEMS_PER_BATCH MAX_PARALLEL_BATCHES RAW_FILES

Each volley line becomes one `batch.add_job(messages=..., model=..., temperature=...,
max_tokens=...)`: the same model (a forced `provider/model` loses its `provider/`), the same
system prompt (a `system` message, which batchata sends as Anthropic's `system` field and as
OpenAI's system message), the same user prompt, temperature and max_tokens. The last line on
stdout is a JSON summary; the harness measures the process itself (wall, CPU, peak RSS).
"""

import json
import sys
import time


def main() -> int:
    input_path, results_dir = sys.argv[1], sys.argv[2]
    items_per_batch, max_parallel = int(sys.argv[3]), int(sys.argv[4])
    raw_files = sys.argv[5] == "1"

    t0 = time.monotonic()
    from batchata import Batch  # imported inside the measured process, as a user's script does

    t_import = time.monotonic()
    batch = (
        Batch(
            results_dir=results_dir,
            max_parallel_batches=max_parallel,
            items_per_batch=items_per_batch,
            raw_files=raw_files,
        )
        .set_state(file=f"{results_dir}.state.json", reuse_state=False)
        .set_verbosity("warn")
    )
    n = 0
    with open(input_path, encoding="utf-8") as f:
        for line in f:
            req = json.loads(line)
            messages = []
            if "system" in req:
                messages.append({"role": "system", "content": req["system"]})
            messages.append({"role": "user", "content": req["prompt"]})
            batch.add_job(
                messages=messages,
                model=req["model"].split("/", 1)[-1],
                temperature=req.get("temperature", 0),
                max_tokens=req["max_tokens"],
            )
            n += 1
    t_jobs = time.monotonic()
    run = batch.run()
    t_run = time.monotonic()
    results = run.results()
    summary = {
        "requests": n,
        "completed": len(results["completed"]),
        "failed": len(results["failed"]),
        "cancelled": len(results["cancelled"]),
        "first_errors": [r.error for r in results["failed"][:3]],
        "import_s": round(t_import - t0, 3),
        "add_jobs_s": round(t_jobs - t_import, 3),
        "run_s": round(t_run - t_jobs, 3),
        "total_s": round(t_run - t0, 3),
    }
    print(json.dumps(summary), flush=True)
    return 0 if summary["completed"] == n else 2


if __name__ == "__main__":
    sys.exit(main())
