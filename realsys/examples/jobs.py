"""An example job module: two job types a user could write, loaded with DTQ_JOB_MODULES.

    DTQ_JOB_MODULES=realsys.examples.jobs dtq serve                       # one node
    dtq cluster up --design mono --dir /tmp/b --job-modules realsys.examples.jobs
    dtq submit --dir /tmp/b wordcount --payload 'the cat and the hat' --wait 10

A module of your own works the same once it is importable (on PYTHONPATH, or installed): the worker
of each design imports every module listed before it starts, and each `@job_type` registers there.

* `wordcount`: the payload as UTF-8 text -> {"words": n, "top": [[word, count], ...]} (async)
* `sha256`: the payload's SHA-256, applied as many times as the job's label `rounds` says (default
  1), in hex: a CPU-bound job, run in a thread (`blocking=True`)
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from realsys.worker import JobContext, JobFailure, job_type

MAX_ROUNDS = 1_000_000


@job_type("wordcount")
async def wordcount(ctx: JobContext) -> bytes:
    try:
        text = ctx.payload.decode()
    except UnicodeDecodeError as exc:
        raise JobFailure(f"wordcount: payload is not UTF-8 text: {exc}", retryable=False) from exc
    counts = Counter(word.strip(".,;:!?\"'()").lower() for word in text.split())
    counts.pop("", None)
    top = [[word, n] for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]
    return json.dumps({"words": sum(counts.values()), "top": top}).encode()


@job_type("sha256", blocking=True)
def sha256(ctx: JobContext) -> str:
    raw = dict(ctx.spec.labels).get("rounds", "1")
    try:
        rounds = int(raw)
    except ValueError:
        raise JobFailure(f"sha256: label rounds={raw!r} is not an integer", retryable=False) from None
    if not 1 <= rounds <= MAX_ROUNDS:
        raise JobFailure(f"sha256: rounds must be in [1, {MAX_ROUNDS}]", retryable=False)
    digest = ctx.payload
    for i in range(rounds):
        if i % 1000 == 0:
            ctx.raise_if_cancelled()
        digest = hashlib.sha256(digest).digest()
    return digest.hex()
