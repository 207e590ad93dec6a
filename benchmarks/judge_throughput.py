"""Judge throughput against a local fake OpenAI server with a fixed per-call latency.

A cold run of N distinct requests at concurrency C against a server that answers each call
after ``delay`` seconds can reach at most C / delay requests per second; the share of that
ideal measures the judge's own overhead (threads, SDK, cache writes). A warm rerun on the
same cache must make zero server requests.

    .venv/bin/python benchmarks/judge_throughput.py [--n 320] [--concurrency 16] [--delay 0.2]

The last line printed is ``name=value`` pairs for machines to read.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from interpflow.fakeapi import FakeAPIServer
from interpflow.judges import Judge, JudgeConfig, JudgeRequest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.2)
    args = ap.parse_args()

    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    requests = [
        JudgeRequest(
            system="Rate the answer 0-9.", user=f"answer #{i}", max_tokens=1, top_logprobs=5
        )
        for i in range(args.n)
    ]
    ideal = args.concurrency / args.delay
    with (
        FakeAPIServer(lambda r: "7", delay_s=args.delay) as server,
        tempfile.TemporaryDirectory() as d,
    ):
        cfg = JudgeConfig(
            backend="openai",
            model="gpt-fake",
            base_url=server.url,
            concurrency=args.concurrency,
            timeout_s=10.0,
        )
        cache = Path(d) / "judge.sqlite"
        # Import the SDK and open the client outside the timed window (one uncached request
        # that is not part of the measured batch).
        Judge(cfg, None).run([JudgeRequest(system="warm-up", user="warm-up")])
        server.reset()

        t0 = time.perf_counter()
        replies, cold = Judge(cfg, cache).run(requests)
        cold_s = time.perf_counter() - t0
        cold_server = server.n_requests

        server.reset()
        t0 = time.perf_counter()
        warm_replies, warm = Judge(cfg, cache).run(requests)
        warm_s = time.perf_counter() - t0
        warm_server = server.n_requests

    req_per_s = args.n / cold_s
    share = req_per_s / ideal
    assert warm_replies == replies
    print(
        f"fake OpenAI server: delay {args.delay:.3f} s/call; judge concurrency {args.concurrency}"
    )
    print(
        f"cold: {args.n} distinct requests in {cold_s:.2f} s = {req_per_s:.1f} req/s "
        f"({share:.1%} of the ideal {ideal:.0f} req/s); server requests {cold_server}, "
        f"failed {cold.n_failed}"
    )
    print(
        f"warm: {warm.n_cache_hits}/{args.n} cache hits in {warm_s:.3f} s; "
        f"server requests {warm_server}, backend calls {warm.n_calls}"
    )
    print(
        f"judge_throughput_share={share:.3f} judge_req_per_s={req_per_s:.1f} "
        f"judge_cold_s={cold_s:.2f} judge_failed={cold.n_failed} "
        f"warm_rerun_calls={warm_server} warm_rerun_s={warm_s:.3f}"
    )


if __name__ == "__main__":
    main()
