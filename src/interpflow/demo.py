"""Live per-token probe demo of a deception instance (seed 000's Gradio demo): the scoring.

``python -m interpflow.demo --instance <name> [--configfile <preset> ...]`` (or ``make demo
INSTANCE=<name> [CONFIG=<preset>]``) starts a Gradio app (:mod:`interpflow.demo_ui`) on the
artifacts of ``results/deception/<name>/``, with two tabs:

- *Replay*: the held-out test prompts of the probe split (``probes/test_proba.parquet``), each
  with the trained logistic probe's class probabilities at every captured position of the
  probe layer, computed from the stored activations (``activations.parquet``) and shown as
  token highlights (:func:`replay_case`);
- *Live*: a typed prompt goes through the instance's model with the instance's chat template,
  system prompt and sampling; as each token is sampled, the probe scores its residual at the
  probe layer (:class:`LiveScorer`). The last prompt token is scored first (the position the
  SmolLM2 preset's probe is trained on), then each response token.

One capture path: the live scores are read by :func:`interpflow.capture.capture_batch` (the
teacher-forced read that :func:`interpflow.capture.capture_texts` and the 4-bit re-read use;
equal to the generation's own :func:`~interpflow.capture.sample_and_capture` to 1e-6), at the
positions of :mod:`interpflow.positions` (``last_prompt``, ``response[i]``), rounded to the
instance's ``capture.store_dtype`` as stored activations are, then scored by the saved probe
(:func:`interpflow.metrics.proba_for`, columns in ``label_classes.txt`` order). The capture runs
inside ``model.generate``'s streamer, between decode steps, so it never overlaps a forward
pass. ``tests/test_demo.py`` checks the scores against ``capture_texts`` and
``sample_and_capture``, and drives the app in a headless chromium.

Which instance: the config is read as snakemake reads it (``config/config.yaml`` under
``root``, the ``--configfile`` presets layered on it, a preset meaning exactly the instances
it declares, the study schema's defaults filled); the model is the one that made the
activations (``model_path`` of ``activations.parquet.provenance.json``).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from interpflow.cli import parser as cli_parser
from interpflow.config import declared_instances, fill_defaults, from_config, resolve_instances
from interpflow.generate import SamplingConfig
from interpflow.models import ModelSpec


@dataclass
class DemoInstance:
    """What the demo needs of one deception instance."""

    name: str
    results: Path  #: results/deception/<name>
    model: ModelSpec
    layer: int  #: the probe layer
    store_dtype: str  #: capture.store_dtype: live vectors are rounded to it, as stored ones are
    sampling: SamplingConfig  #: generation settings (system prompt, temperature, top_p)
    probe: object  #: the logistic probe (sklearn pipeline, probes/logreg.joblib)
    classes: np.ndarray  #: probes/label_classes.txt: the probability columns' order
    trained_on: tuple[str, ...] = ()  #: the positions of the probe's training rows


def _merge(base: dict, update: dict) -> dict:
    """Recursive dict update, as snakemake layers ``--configfile`` on the default config."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def instance_config(root: Path, name: str, configfiles: list[str] = ()) -> tuple[dict, dict]:
    """(deception instance ``name``'s settings with the schema defaults, the models block)."""
    config = yaml.safe_load((root / "config/config.yaml").read_text()) or {}
    files = [Path(f) if Path(f).exists() else root / f for f in configfiles]  # cwd, else root
    presets = [yaml.safe_load(f.read_text()) or {} for f in files]
    for preset in presets:
        _merge(config, preset)
    instances = resolve_instances(config, declared_instances(presets) if presets else None)
    if name not in instances["deception"]:
        raise ValueError(
            f"no deception instance {name!r} in {['config/config.yaml', *configfiles]} "
            f"(declared: {', '.join(sorted(instances['deception'])) or 'none'})"
        )
    schemas = root / "workflow/schemas"
    defs = yaml.safe_load((schemas / "config.schema.yaml").read_text())["$defs"]
    schema = yaml.safe_load((schemas / "deception.schema.yaml").read_text())
    return fill_defaults(instances["deception"][name], schema, defs), config.get("models") or {}


def load_instance(root: str | Path, name: str, configfiles: list[str] = ()) -> DemoInstance:
    """The instance's settings, model spec and trained probe; a missing artifact fails naming
    the file and the snakemake target that builds it."""
    import joblib

    root = Path(root)
    inst, models = instance_config(root, name, list(configfiles))
    results = root / "results/deception" / name
    need = ["activations.parquet.provenance.json", "probes/logreg.joblib", "probes/metrics.json"]
    for rel in need:
        if not (results / rel).exists():
            raise FileNotFoundError(
                f"{results / rel} does not exist: build it first with `snakemake --cores 2 "
                f"results/deception/{name}/probes/metrics.json"
                + "".join(f" --configfile {f}" for f in configfiles)
                + "` (or `make demo` does)"
            )
    made = json.loads((results / "activations.parquet.provenance.json").read_text())
    trained = json.loads((results / "probes/metrics.json").read_text())
    layer = int(inst["probes"]["layer"])
    if int(trained["layer"]) != layer:
        raise ValueError(
            f"{results}/probes was trained at layer {trained['layer']}, the config says "
            f"deception.{name}.probes.layer = {layer}: rebuild the probes"
        )
    path = Path(made["model_path"])
    path = root / path if not path.is_absolute() and (root / path).exists() else path
    use = inst["model"]
    decl = models.get(use["name"]) or {}
    from interpflow.deception.generate import GenerationConfig

    gen = from_config(GenerationConfig, inst["generation"], f"deception.{name}.generation")
    return DemoInstance(
        name=name,
        results=results,
        model=ModelSpec(
            name_or_path=str(path),
            revision=made.get("revision"),
            dtype=use.get("dtype", "auto"),
            device=use.get("device", "auto"),
            trust_remote_code=bool(made.get("trust_remote_code", False)),
            chat_template={**(decl.get("chat_template") or {}), **(use.get("chat_template") or {})},
        ),
        layer=layer,
        store_dtype=inst["capture"]["store_dtype"],
        sampling=gen.sampling(),
        probe=joblib.load(results / "probes/logreg.joblib"),
        classes=np.asarray(
            [c for c in (results / "probes/label_classes.txt").read_text().splitlines() if c]
        ),
        trained_on=tuple(trained.get("positions") or ()),
    )


def score_vectors(inst: DemoInstance, X: np.ndarray) -> np.ndarray:
    """The probe's class probabilities ``[n, k]`` (``inst.classes`` order) of float32 vectors
    ``[n, d]``, rounded to the storage dtype first (as the probe's training rows were)."""
    from interpflow.metrics import proba_for

    X = np.asarray(X, dtype=np.float32).astype(inst.store_dtype).astype(np.float32)
    return proba_for(inst.probe, X, inst.classes)


@dataclass
class Token:
    """One shown token: its text, id, position name (None = not scored) and probabilities."""

    text: str
    token_id: int | None = None
    position: str | None = None
    proba: dict[str, float] | None = None


@dataclass
class Scored:
    """The state of one case (a replayed test prompt or a live generation)."""

    prompt: str
    tokens: list[Token] = field(default_factory=list)
    label: str | None = None  #: the true class (replay)
    prompt_id: str | None = None  #: the prompt's id (replay)
    done: bool = False
    note: str = ""

    @property
    def response_ids(self) -> list[int]:
        return [t.token_id for t in self.tokens if (t.position or "").startswith("response[")]


# ------------------------------------------------------------------------------------------
# Replay: held-out test prompts, scored from the stored activations


def test_prompts(inst: DemoInstance) -> pl.DataFrame:
    """One row per held-out prompt: ``prompt_id``, ``label``, ``prompt``, ``chat_prompt``,
    ``response`` (test prompts of ``probes/test_proba.parquet`` joined to the generations)."""
    test = pl.read_parquet(
        inst.results / "probes/test_proba.parquet", columns=["prompt_id", "label"]
    )
    test = test.unique("prompt_id", maintain_order=True)
    gens = pl.read_parquet(
        inst.results / "generations.parquet",
        columns=["prompt_id", "prompt", "chat_prompt", "response"],
    )
    return test.join(gens, on="prompt_id", how="left", maintain_order="left").sort(
        "label", "prompt_id"
    )


def replay_case(inst: DemoInstance, tokenizer, row: dict) -> Scored:
    """A held-out prompt's tokens (chat prompt's last token, then the response), each captured
    one with the probe's probabilities from the stored activations at the probe layer."""
    acts = (
        pl.scan_parquet(inst.results / "activations.parquet")
        .filter((pl.col("prompt_id") == row["prompt_id"]) & (pl.col("layer") == inst.layer))
        .select("position", "token_index", "activation")
        .collect()
    )
    X = np.stack(acts["activation"].to_numpy()).astype(np.float32) if acts.height else None
    proba = score_vectors(inst, X) if X is not None else np.zeros((0, len(inst.classes)))
    at = {
        int(t): (pos, dict(zip(map(str, inst.classes), map(float, p), strict=True)))
        for t, pos, p in zip(acts["token_index"], acts["position"], proba, strict=True)
    }
    p_ids = tokenizer(row["chat_prompt"], add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
    ids = p_ids + r_ids
    start = len(p_ids) - 1  # the last prompt token (the assistant header's end)
    out = Scored(prompt=row["prompt"], label=row["label"], prompt_id=row["prompt_id"], done=True)
    for t in range(start, len(ids)):
        pos, p = at.get(t, (None, None))
        out.tokens.append(Token(tokenizer.decode([ids[t]]), int(ids[t]), pos, p))
    return out


# ------------------------------------------------------------------------------------------
# Live: generate and score each new token as it is sampled


class LiveScorer:
    """The instance's model, loaded once; :meth:`stream` generates and scores a prompt."""

    def __init__(self, inst: DemoInstance, threads: int | None = None):
        import torch

        from interpflow.models import eos_token_ids, load_model

        if threads:
            torch.set_num_threads(threads)
        self.inst = inst
        self.model, self.tokenizer = load_model(inst.model)
        self.eos = eos_token_ids(self.model, self.tokenizer)
        self._lock = threading.Lock()  # one generation at a time on the shared model

    def chat(self, prompt: str) -> str:
        from interpflow.models import chat_prompt

        return chat_prompt(self.tokenizer, prompt, self.inst.sampling.system_prompt)

    def _score(self, seqs, width: int, n_response: int, position: str) -> dict[str, float]:
        """The probe on ``position`` of ``seqs[:, :width + n_response]`` (one teacher-forced
        :func:`~interpflow.capture.capture_batch` read up to the probe layer)."""
        import torch

        from interpflow.capture import capture_batch
        from interpflow.positions import parse_positions

        dev = seqs.device
        vectors, _ = capture_batch(
            self.model,
            seqs,
            torch.ones((1, width), dtype=torch.long, device=dev),
            width,
            torch.tensor([width], device=dev),
            torch.tensor([n_response], device=dev),
            (self.inst.layer,),
            parse_positions([position]),
        )
        p = score_vectors(self.inst, vectors[(self.inst.layer, position)])[0]
        return dict(zip(map(str, self.inst.classes), map(float, p), strict=True))

    def stream(
        self, prompt: str, max_new_tokens: int = 48, seed: int = 0, do_sample: bool | None = None
    ) -> Iterator[Scored]:
        """Yield the growing :class:`Scored` state: first the scored last prompt token, then
        one more scored response token per step; the last state has ``done`` set. Sampling is
        the instance's (``do_sample`` None) or greedy (False), seeded by ``seed``."""
        import torch
        from transformers.generation.streamers import BaseStreamer

        from interpflow.generate import _generate_kwargs, tokenize_chats

        sampling = SamplingConfig(
            max_new_tokens=int(max_new_tokens),
            temperature=self.inst.sampling.temperature,
            top_p=self.inst.sampling.top_p,
            do_sample=self.inst.sampling.do_sample if do_sample is None else bool(do_sample),
            seed=int(seed),
        )
        enc = tokenize_chats(self.tokenizer, [self.chat(prompt)], self.model.device)
        width = enc["input_ids"].shape[1]
        state = Scored(prompt=prompt)
        out: queue.Queue = queue.Queue()
        scorer, eos, tok = self, set(self.eos), self.tokenizer

        class Streamer(BaseStreamer):  # called by generate between decode steps
            def __init__(self):
                self.seqs, self.started, self.ended = enc["input_ids"], False, False

            def put(self, value):
                if not self.started:  # the prompt ids come first
                    self.started = True
                    last = int(value[0, -1])
                    p = scorer._score(self.seqs, width, 0, "last_prompt")
                    out.put(Token(tok.decode([last]), last, "last_prompt", p))
                    return
                token = int(value.reshape(-1)[0])
                if self.ended or token in eos:
                    self.ended = True
                    return
                self.seqs = torch.cat([self.seqs, value.reshape(1, 1).to(self.seqs)], dim=1)
                n = self.seqs.shape[1] - width
                p = scorer._score(self.seqs, width, n, f"response[{n - 1}]")
                out.put(Token(tok.decode([token]), token, f"response[{n - 1}]", p))

            def end(self):
                out.put(None)

        def run():
            try:
                torch.manual_seed(sampling.seed)
                with torch.inference_mode():
                    self.model.generate(
                        **enc,
                        **_generate_kwargs(sampling, self.tokenizer, self.eos),
                        streamer=Streamer(),
                    )
            except Exception as e:  # noqa: BLE001 (re-raised in the caller: no silent hang)
                out.put(e)
                out.put(None)

        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            while (item := out.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                state.tokens.append(item)
                yield state
            worker.join()
        state.done = True
        n = len(state.response_ids)
        state.note = f"{n} tokens" + (" (stopped at EOS)" if n < max_new_tokens else "")
        yield state


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser(module="interpflow.demo", doc=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", default="default", help="deception instance name")
    parser.add_argument("--configfile", nargs="*", default=[], help="presets, as for snakemake")
    parser.add_argument("--root", default=".", help="the workflow directory (results/ inside)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    from interpflow.demo_ui import launch

    inst = load_instance(args.root, args.instance, args.configfile)
    launch(inst, LiveScorer(inst, args.threads), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
