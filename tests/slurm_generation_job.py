"""A generation on the stub, run as a SLURM job step the way the slurm plugin runs a rule:
``srun`` starts a parent process that has no SIGUSR1 handler (the plugin's jobstep snakemake)
and the generation runs in its child (the rule's script). Used by tests/test_slurm.py.

    python slurm_generation_job.py parent PROMPTS STUB OUT DELAY   # in the job step
    python slurm_generation_job.py child PROMPTS STUB OUT DELAY    # what the parent runs

``DELAY`` seconds of sleep before every forward pass stand in for a large model's token step,
so the job is still generating when SLURM's warning comes. The child writes ``result.json``:
how the run ended and how many forward passes began after the signal arrived.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig

SAMPLING = SamplingConfig(max_new_tokens=8, seed=1)
CAPTURE = CaptureConfig(layers=(2,), positions=("last_prompt", "response_mean"))
RUN = RunConfig(batch_size=2, shard_size=4)


def generate(prompts, stub, out: Path, delay: float = 0.0) -> None:
    """The generation of the test (``delay`` s before each forward pass; 0 = as fast as it
    goes); raises ``Interrupted`` when signalled."""
    import interpflow.generate as G
    from interpflow.models import ModelSpec
    from interpflow.signals import StopSignals

    state = {"signalled": False, "after_signal": 0}
    real_handle = StopSignals._handle

    def handle(self, signum, frame):  # StopSignals' own handler, noting when it ran
        state["signalled"] = True
        real_handle(self, signum, frame)

    StopSignals._handle = handle

    def slow_step(_module, _args):
        if state["signalled"]:
            state["after_signal"] += 1
        time.sleep(delay)

    real = G.load_model

    def load(spec):
        model, tokenizer = real(spec)
        model.register_forward_pre_hook(slow_step)
        return model, tokenizer

    G.load_model = load
    try:
        G.generate_and_capture(
            prompts,
            out / "gen.parquet",
            out / "act.parquet",
            out / "prov.json",
            model=ModelSpec(str(stub)),
            sampling=SAMPLING,
            capture=CAPTURE,
            run=RUN,
            log=lambda msg: print(msg, flush=True),
        )
    finally:
        G.load_model, StopSignals._handle = real, real_handle
        (out / "forwards_after_signal").write_text(str(state["after_signal"]))


def main(mode: str, prompts: str, stub: str, out: str, delay: str) -> int:
    if mode == "parent":  # no handler: SIGUSR1 ends it, as it ends the jobstep snakemake
        return subprocess.call([sys.executable, __file__, "child", prompts, stub, out, delay])
    from interpflow.signals import Interrupted

    start = time.time()
    try:
        generate(prompts, stub, Path(out), float(delay))
        result = "finished"
    except Interrupted as e:
        result = str(e)
    (Path(out) / "result.json").write_text(
        json.dumps({"result": result, "seconds": time.time() - start})
    )
    return 0 if result == "finished" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
