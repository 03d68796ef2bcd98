"""docker/test.sh step 11 (operability): a job type from DTQ_JOB_MODULES runs in the containers, and
Prometheus scrapes every dtq container. Exits non-zero with one line saying what failed.

    python docker/check_ops.py --addr 127.0.0.1:PORT --prometheus 127.0.0.1:PORT --targets 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request

from realsys.client import DtqClient

TEXT = b"the quick brown fox jumps over the lazy dog and the cat"
EXPECTED = {"words": 12, "top": [["the", 3], ["and", 1], ["brown", 1], ["cat", 1], ["dog", 1]]}


async def custom_job(address: str) -> str:
    async with DtqClient([address], timeout=10.0) as client:
        job_id = await client.submit("wordcount", TEXT)
        result = await client.result(job_id, wait=60)
    output = json.loads(result.response.output or b"null")
    if output != EXPECTED:
        raise SystemExit(f"check_ops: wordcount job {job_id} returned {output!r}, not {EXPECTED!r}")
    return job_id


def targets_up(prometheus: str, expected: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            url = f"http://{prometheus}/api/v1/targets?state=active"
            with urllib.request.urlopen(url, timeout=5) as reply:
                body = json.load(reply)
            active = [t for t in body["data"]["activeTargets"] if t["labels"].get("job") == "dtq"]
            up = sorted(t["labels"]["node"] for t in active if t["health"] == "up")
            last = f"{len(up)} of {len(active)} targets up: {', '.join(up)}"
            if len(active) == expected and len(up) == expected:
                return up
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(2)
    raise SystemExit(f"check_ops: Prometheus at {prometheus} did not scrape {expected} targets: {last}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="a client-facing dtq address")
    parser.add_argument("--prometheus", required=True, help="host:port of Prometheus")
    parser.add_argument("--targets", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    job_id = asyncio.run(custom_job(args.addr))
    up = targets_up(args.prometheus, args.targets, args.timeout)
    scraped = ", ".join(up)
    print(f"check_ops: wordcount job {job_id} succeeded; Prometheus scrapes {len(up)} targets: {scraped}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
