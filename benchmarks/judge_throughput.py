"""Judge throughput and cache: a local fake OpenAI server with a fixed latency per call.

What the pipeline promises (:mod:`interpflow.judges`): a :class:`~interpflow.judges.Judge`
calls its backend from a thread pool of ``concurrency`` workers, and caches every successful
reply in sqlite, so a warm rerun makes zero backend calls.

The server (``python -m interpflow.fakeapi``, the test suite's fake API, in its own process, like a remote API: off this
process's GIL) answers each call after ``--delay`` seconds. Each repeat runs, in turn
(interleaved, after one untimed warm-up call that imports the SDK):

* ``concurrency C`` a cold run of ``--n`` distinct requests at ``--concurrency`` on a fresh
  cache, then a warm rerun of the same requests on that cache;
* ``concurrency 1`` the same cold run at concurrency 1 (fresh cache).

Goals, judged per run and on the median of the per-repeat ratios:

1. every warm rerun makes 0 server requests (the server's own count), all cache hits, and
   returns the cold run's replies; every cold run has no failed request;
2. cold throughput at concurrency C >= 50% of the ideal speedup C over concurrency 1
   (``--goal-efficiency``; with the defaults, >= 8x): the pool's threads, the SDK and cache
   writes do not serialise the calls.

Exit status 0 when every goal is met, 1 when one is missed. Results go to a table on
stdout, to JSON (``--out``, default ``benchmarks/results/judge_throughput.json``) and, as
``name=value`` pairs, to the last line.

    .venv/bin/python benchmarks/judge_throughput.py [--n 64] [--concurrency 16] [--delay 0.1]
                                                    [--repeats 3]
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

from _bench import Goal, interleave, load_average, load_line, median, per_repeat, report

from interpflow.judges import Judge, JudgeConfig, JudgeRequest


@contextlib.contextmanager
def server_process(delay: float) -> Iterator[str]:
    """Run ``python -m interpflow.fakeapi`` in a child process; yield its base URL."""
    cmd = [sys.executable, "-m", "interpflow.fakeapi", "--reply", "7", "--delay", str(delay)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"fake server did not start (printed {url!r})")
        yield url
    finally:
        proc.stdin.close()  # the server exits when its stdin closes
        proc.wait(timeout=10)


def server_count(url: str) -> int:
    """The server's own count of POST requests so far."""
    with urllib.request.urlopen(f"{url}/_stats", timeout=5) as resp:
        return int(json.load(resp)["n_requests"])


class ColdRun:
    """One cold run of ``requests`` at ``concurrency`` on a fresh cache; a call returns seconds.

    With ``warm``, it then reruns the same requests on that cache and records what the server
    saw (``warm_calls``) and the run's stats, in ``self.warm``.
    """

    def __init__(self, url: str, requests: list[JudgeRequest], concurrency: int, warm: bool):
        self.url, self.requests, self.warm_rerun = url, requests, warm
        self.cfg = JudgeConfig(
            backend="openai",
            model="gpt-fake",
            base_url=url,
            concurrency=concurrency,
            timeout_s=10.0,
            max_retries=0,  # a failed call must show as failed, not hide in a retry
        )
        self.failed: list[int] = []
        self.cold_calls: list[int] = []
        self.warm: list[dict] = []

    def __call__(self) -> float:
        with tempfile.TemporaryDirectory() as d:
            cache = Path(d) / "judge.sqlite"
            c0 = server_count(self.url)
            t0 = time.perf_counter()
            with Judge(self.cfg, cache) as judge:
                replies, stats = judge.run(self.requests)
            seconds = time.perf_counter() - t0
            self.failed.append(stats.n_failed)
            self.cold_calls.append(server_count(self.url) - c0)
            if self.warm_rerun:
                c1 = server_count(self.url)
                t1 = time.perf_counter()
                with Judge(self.cfg, cache) as judge:
                    warm_replies, warm = judge.run(self.requests)
                warm_s = time.perf_counter() - t1
                self.warm.append(
                    {
                        "s": warm_s,
                        "server_calls": server_count(self.url) - c1,
                        "backend_calls": warm.n_calls,
                        "cache_hits": warm.n_cache_hits,
                        "same_replies": warm_replies == replies,
                    }
                )
        return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="distinct requests per cold run")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.1, help="server seconds per call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--goal-efficiency",
        type=float,
        default=0.5,
        help="min (speedup of concurrency C over 1) / C",
    )
    ap.add_argument("--out", help="JSON path (default benchmarks/results/judge_throughput.json)")
    args = ap.parse_args(argv)
    if min(args.n, args.concurrency, args.repeats) < 1 or not args.delay > 0:
        ap.error("--n, --concurrency, --repeats must be >= 1 and --delay > 0")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    load_before = load_average()
    requests = [
        JudgeRequest(
            system="Rate the answer 0-9.", user=f"answer #{i}", max_tokens=1, top_logprobs=5
        )
        for i in range(args.n)
    ]
    c, n = args.concurrency, args.n
    with server_process(args.delay) as url:
        conc = ColdRun(url, requests, c, warm=True)
        serial = ColdRun(url, requests, 1, warm=False)
        # Warm-up, untimed: import the SDK, open a connection, start the server's threads.
        Judge(conc.cfg, None).run([JudgeRequest(system="warm-up", user="warm-up")])
        configs = {f"cold, concurrency {c}": conc, "cold, concurrency 1": serial}
        times = interleave(configs, args.repeats, warmup=False)
    t_conc, t_serial = times[f"cold, concurrency {c}"], times["cold, concurrency 1"]
    warm_s = [w["s"] for w in conc.warm]
    times["warm rerun (cache)"] = warm_s
    speedup = per_repeat(t_serial, t_conc)
    ratios = {f"speedup (concurrency {c} / 1)": speedup}
    warm_calls = max(w["server_calls"] for w in conc.warm)
    warm_ok = all(
        w["server_calls"] == 0 and w["backend_calls"] == 0 and w["cache_hits"] == n
        for w in conc.warm
    ) and all(w["same_replies"] for w in conc.warm)
    failed = sum(conc.failed) + sum(serial.failed)
    cold_calls_ok = all(x == n for x in conc.cold_calls + serial.cold_calls)
    rps_c = [n / t for t in t_conc]
    rps_1 = [n / t for t in t_serial]
    figures: dict[str, object] = {
        "req_per_s": median(rps_c),
        "req_per_s_concurrency_1": median(rps_1),
        "speedup": median(speedup),
        "efficiency": median(speedup) / c,
        "share_of_ideal": median(rps_c) / (c / args.delay),
        "warm_rerun_calls": warm_calls,
        "warm_rerun_s": median(warm_s),
        "failed": failed,
    }
    goals = [
        Goal(
            "warm_rerun_calls",
            f"warm rerun of {n} cached requests makes 0 server requests, {n}/{n} cache hits, "
            f"same replies (every repeat)",
            warm_calls if warm_ok else max(warm_calls, 1),
            "==",
            0,
        ),
        Goal(
            "cold_failed",
            f"cold runs: 0 failed requests, exactly {n} server requests each",
            failed if cold_calls_ok else max(failed, 1),
            "==",
            0,
        ),
        Goal(
            "speedup",
            f"cold throughput at concurrency {c} >= {args.goal_efficiency:.0%} of the ideal "
            f"{c}x concurrency 1, i.e. >= {args.goal_efficiency * c:.1f}x "
            f"(median of per-repeat ratios)",
            median(speedup),
            ">=",
            args.goal_efficiency * c,
        ),
    ]
    load_after = load_average()
    header = [
        (
            f"judge_throughput: {n} distinct requests per cold run, fake OpenAI server in its "
            f"own process, {args.delay:.3f} s per call; {args.repeats} repeats interleaved"
        ),
        (
            f"ideal: concurrency {c} -> {c / args.delay:.0f} req/s (C / delay), "
            f"concurrency 1 -> {1 / args.delay:.0f} req/s"
        ),
        (
            f"measured (medians): concurrency {c} {figures['req_per_s']:.1f} req/s "
            f"({figures['share_of_ideal']:.0%} of ideal), concurrency 1 "
            f"{figures['req_per_s_concurrency_1']:.1f} req/s; warm rerun "
            f"{figures['warm_rerun_s']:.3f} s, server requests {warm_calls}"
        ),
        load_line(load_before, load_after),
    ]
    meta = {
        "args": vars(args),
        "load_before": load_before,
        "load_after": load_after,
        "warm_runs": conc.warm,
        "cold_server_calls": {"concurrent": conc.cold_calls, "serial": serial.cold_calls},
    }
    return report("judge_throughput", header, times, ratios, goals, figures, meta, args.out)


if __name__ == "__main__":
    sys.exit(main())
