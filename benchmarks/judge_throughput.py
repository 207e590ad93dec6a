"""Judge throughput against a local fake OpenAI server with a fixed per-call latency.

A cold run of N distinct requests at concurrency C against a server that answers each call
after ``delay`` seconds can reach at most C / delay requests per second; the share of that
ideal measures the judge's own overhead (threads, SDK, cache writes). A warm rerun on the
same cache must make zero server requests.

The headline numbers use the fake server in a separate process (like a real, remote API).
The same run with the server as a thread of this process is printed beside it: there the
server's handlers compete with the client for the GIL, which costs throughput on few cores.

    .venv/bin/python benchmarks/judge_throughput.py [--n 320] [--concurrency 16] [--delay 0.2]

The last line printed is ``name=value`` pairs for machines to read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from interpflow.fakeapi import FakeAPIServer
from interpflow.judges import Judge, JudgeConfig, JudgeRequest


@contextlib.contextmanager
def server_process(delay: float) -> Iterator[str]:
    """Run ``python -m interpflow.fakeapi`` in a child process; yield its base URL."""
    cmd = [sys.executable, "-m", "interpflow.fakeapi", "--reply", "7", "--delay", str(delay)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()  # the server exits when its stdin closes
        proc.wait(timeout=10)


def server_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_stats", timeout=5) as resp:
        return int(json.load(resp)["n_requests"])


def measure(url: str, count, n: int, concurrency: int, cache_dir: str) -> dict[str, float]:
    """Cold run of ``n`` distinct requests, then a warm rerun on the same cache."""
    cfg = JudgeConfig(
        backend="openai", model="gpt-fake", base_url=url, concurrency=concurrency, timeout_s=10.0
    )
    requests = [
        JudgeRequest(
            system="Rate the answer 0-9.", user=f"answer #{i}", max_tokens=1, top_logprobs=5
        )
        for i in range(n)
    ]
    # Import the SDK and open a client outside the timed window.
    Judge(cfg, None).run([JudgeRequest(system="warm-up", user="warm-up")])
    cache = Path(cache_dir) / "judge.sqlite"
    c0 = count()
    t0 = time.perf_counter()
    replies, cold = Judge(cfg, cache).run(requests)
    cold_s = time.perf_counter() - t0
    c1 = count()
    t0 = time.perf_counter()
    warm_replies, warm = Judge(cfg, cache).run(requests)
    warm_s = time.perf_counter() - t0
    c2 = count()
    assert warm_replies == replies
    return {
        "cold_s": cold_s,
        "req_per_s": n / cold_s,
        "failed": cold.n_failed,
        "cold_server": c1 - c0,
        "warm_s": warm_s,
        "warm_hits": warm.n_cache_hits,
        "warm_server": c2 - c1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.2)
    args = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    ideal = args.concurrency / args.delay

    with server_process(args.delay) as url, tempfile.TemporaryDirectory() as d:
        proc = measure(url, lambda: server_count(url), args.n, args.concurrency, d)
    with (
        FakeAPIServer(lambda r: "7", delay_s=args.delay) as srv,
        tempfile.TemporaryDirectory() as d,
    ):
        inproc = measure(srv.url, lambda: srv.n_requests, args.n, args.concurrency, d)

    print(
        f"fake OpenAI server: delay {args.delay:.3f} s/call; judge concurrency {args.concurrency}"
    )
    print(
        f"ideal: {args.concurrency} / {args.delay} = {ideal:.0f} req/s; {args.n} distinct requests"
    )
    for name, m in (("server in own process", proc), ("server in this process", inproc)):
        print(
            f"{name}: cold {m['cold_s']:.2f} s = {m['req_per_s']:.1f} req/s "
            f"({m['req_per_s'] / ideal:.1%} of ideal), server requests {m['cold_server']}, "
            f"failed {m['failed']}; warm rerun {m['warm_hits']}/{args.n} cache hits in "
            f"{m['warm_s']:.3f} s, server requests {m['warm_server']}"
        )
    print(
        f"judge_throughput_share={proc['req_per_s'] / ideal:.3f} "
        f"judge_req_per_s={proc['req_per_s']:.1f} judge_failed={proc['failed']} "
        f"warm_rerun_calls={proc['warm_server']} warm_rerun_s={proc['warm_s']:.3f} "
        f"judge_throughput_share_inproc={inproc['req_per_s'] / ideal:.3f} "
        f"warm_rerun_calls_inproc={inproc['warm_server']}"
    )


if __name__ == "__main__":
    main()
