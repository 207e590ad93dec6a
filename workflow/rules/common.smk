# Glue shared by every rule: validation, constraints, input functions, target lists.
# Every SLURM job re-parses this file: no torch imports, no big file reads here.

import hashlib
import os
from pathlib import Path

from snakemake.utils import validate

from interpflow.judges import JudgeConfig, require_api_key


validate(config, schema="../schemas/config.schema.yaml")

STUB_DIR = "results/models/stub"
LIB = Path(workflow.basedir) / "src" / "interpflow"

# Jobs import the library from this checkout, in any env (conda, SLURM), installed or not.
os.environ.update(
    PYTHONPATH=os.pathsep.join([str(LIB.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
)


def code_hash(*modules):
    """Hash of the library modules behind a script, passed as a param so jobs rerun on code changes."""
    h = hashlib.sha256()
    for m in modules:
        h.update((LIB / f"{m}.py").read_bytes())
    return h.hexdigest()[:12]


def model_input(wildcards=None):
    """The stub's directory when the study runs on the stub; nothing for a hub model."""
    return [STUB_DIR] if config["model"]["name"] == "stub" else []


def model_path():
    return STUB_DIR if config["model"]["name"] == "stub" else config["model"]["name"]


def model_spec():
    """Keyword arguments of interpflow.models.ModelSpec."""
    m = config["model"]
    return dict(
        name_or_path=model_path(),
        revision=m["revision"],
        dtype=m["dtype"],
        device=m["device"],
        trust_remote_code=m["trust_remote_code"],
    )


def judge(name, key):
    """Keyword arguments of interpflow.judges.JudgeConfig for the judge `name`.

    Fails at DAG planning (not hours into a GPU job) when the judge is unknown or its API
    key is missing from the environment. The key itself never enters params or logs.
    """
    if name not in config["judges"]:
        raise ValueError(
            f"config key {key}: judge {name!r} is not defined under 'judges' "
            f"(defined: {', '.join(sorted(config['judges']))})"
        )
    cfg = JudgeConfig(**config["judges"][name])
    require_api_key(cfg)
    return dict(config["judges"][name])


def deception_judges():
    lab = config["deception"]["labels"]
    out = {"label": judge(lab["judge"], "deception.labels.judge")}
    if lab["verbalizer"]["enabled"]:
        out["verbalizer"] = judge(lab["verbalizer"]["judge"], "deception.labels.verbalizer.judge")
    return out


DECEPTION_JUDGES = deception_judges()


def deception_targets():
    probes = "results/probes"
    out = [
        f"{probes}/logreg.joblib",
        f"{probes}/metrics.json",
        f"{probes}/confusion_logreg.png",
        f"{probes}/confusion_mlp.png",
        f"{probes}/layer_sweep.png",
        "results/labels/deception.summary.json",
    ]
    if config["deception"]["labels"]["verbalizer"]["enabled"]:
        out.append("results/labels/deception_nla.parquet")
    return out


def tribunal_problems_input(wildcards=None):
    """The local problems file (a missing one fails at planning); nothing for a hub dataset id."""
    source = config["tribunal"]["problems"]["source"]
    local = Path(source).exists() or source.endswith((".jsonl", ".json", ".parquet"))
    return [source] if local else []


def tribunal_targets():
    out = "results/tribunal"
    return [
        f"{out}/labels.summary.json",
        f"{out}/metrics.json",
        f"{out}/probe_results.png",
        f"{out}/implicit_value_directions.json",
    ]


def all_targets():
    return deception_targets() + tribunal_targets()
