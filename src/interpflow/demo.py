"""Live per-token probe demo of a deception instance (seed 000's Gradio demo): the command.

``python -m interpflow.demo --instance <name> [--configfile <preset> ...]`` (or ``make demo
INSTANCE=<name> [CONFIG=<preset>]``) starts a Gradio app (:mod:`interpflow.demo_ui`) on the
artifacts of ``results/deception/<name>/``, with two tabs:

- *Replay*: the held-out test prompts of the probe split (``probes/test_proba.parquet``), each
  with the trained logistic probe's class probabilities at every captured position of the
  probe layer, computed from the stored activations (``activations.parquet``) and shown as
  token highlights (:func:`~interpflow.demo_scores.replay_case`);
- *Live*: a typed prompt goes through the instance's model with the instance's chat template,
  system prompt and sampling; as each token is sampled, the probe scores its residual at the
  probe layer (:class:`~interpflow.demo_scores.LiveScorer`). The last prompt token is scored
  first (the position the SmolLM2 preset's probe is trained on), then each response token;
  the note under the tokens gives the measured ms per token (decode step + probe read) and
  the probe's share. ``--4bit`` loads the model in 4 bits (bitsandbytes, the instance's
  ``quant_transfer.scheme``), as seed 000's demo runs it.

The scoring is :mod:`interpflow.demo_scores`; this module reads the instance and starts the
app.

Which instance: the config is read as snakemake reads it (``config/config.yaml`` under
``root``, the ``--configfile`` presets layered on it, a preset meaning exactly the instances
it declares, the study schema's defaults filled); the model is the one that made the
activations (``model_path`` of ``activations.parquet.provenance.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from interpflow.cli import parser as cli_parser
from interpflow.config import declared_instances, fill_defaults, from_config, resolve_instances
from interpflow.demo_scores import DemoInstance, LiveScorer
from interpflow.models import ModelSpec


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


def demo_quantization(inst: dict, four_bit: bool) -> str | None:
    """The 4-bit type the demo loads the model in: the instance's ``quant_transfer.scheme``
    (the key the 4-bit transfer stage reads) with ``four_bit``, else None (full precision)."""
    # deviation: 4-bit through bitsandbytes, not MLX
    return inst["quant_transfer"]["scheme"] if four_bit else None


def load_instance(
    root: str | Path, name: str, configfiles: list[str] = (), four_bit: bool = False
) -> DemoInstance:
    """The instance's settings, model spec and trained probe; a missing artifact fails naming
    the file and the snakemake target that builds it. ``four_bit``: the model loaded in the
    bitsandbytes 4-bit type of ``quant_transfer.scheme``, the key the 4-bit transfer stage
    reads (seed 000's demo runs its model in 4 bits)."""
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
            quantization=demo_quantization(inst, four_bit),
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


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser(module="interpflow.demo", doc=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", default="default", help="deception instance name")
    parser.add_argument("--configfile", nargs="*", default=[], help="presets, as for snakemake")
    parser.add_argument("--root", default=".", help="the workflow directory (results/ inside)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--4bit",
        dest="four_bit",
        action="store_true",
        help="load the model in 4 bits (bitsandbytes, the instance's quant_transfer.scheme)",
    )
    args = parser.parse_args(argv)
    from interpflow.demo_ui import launch

    inst = load_instance(args.root, args.instance, args.configfile, four_bit=args.four_bit)
    launch(inst, LiveScorer(inst, args.threads), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
