# Glue shared by every rule: validation, constraints, input functions, target lists.
# Every SLURM job re-parses this file: no torch imports, no big file reads here.

import hashlib
import os
from pathlib import Path

from snakemake.utils import validate

from interpflow.judges import JudgeConfig, require_api_key
from interpflow.models import check_model_path


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


def existing_file(path, key):
    """``path``, read from config key ``key``; a missing file fails at planning, naming the key."""
    if not Path(path).is_file():
        raise ValueError(f"config key {key}: file {path} does not exist")
    return path


def model_input(wildcards=None):
    """The stub's directory when the study runs on the stub; nothing for a hub model."""
    return [STUB_DIR] if config["model"]["name"] == "stub" else []


def model_path():
    """The stub's directory, a hub id, or a local directory (a missing one fails at planning)."""
    name = config["model"]["name"]
    if name == "stub":
        return STUB_DIR
    check_model_path(name, "model.name")
    return name


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
    """Keyword arguments of interpflow.judges.JudgeConfig for the judge `name` (`name` too,
    for error messages).

    Fails at DAG planning (not hours into a GPU job) when the judge is unknown, its API key
    is missing from the environment, or its local model directory (hf) does not exist. The
    key itself never enters params or logs.
    """
    if name not in config["judges"]:
        raise ValueError(
            f"config key {key}: judge {name!r} is not defined under 'judges' "
            f"(defined: {', '.join(sorted(config['judges']))})"
        )
    cfg = JudgeConfig(**config["judges"][name])
    require_api_key(cfg)
    if cfg.backend == "hf" and cfg.model != STUB_DIR:  # the stub may not be built yet
        check_model_path(cfg.model, f"judges.{name}.model")
    return dict(config["judges"][name], name=name)


def deception_judges():
    lab = config["deception"]["labels"]
    out = {"label": judge(lab["judge"], "deception.labels.judge")}
    if lab["verbalizer"]["enabled"]:
        out["verbalizer"] = judge(lab["verbalizer"]["judge"], "deception.labels.verbalizer.judge")
    return out


DECEPTION_JUDGES = deception_judges()


def deception_banks(wildcards=None):
    """deception.bank_dir/<bank>.txt for each of deception.banks; a missing one fails at planning."""
    d = config["deception"]["bank_dir"]
    key = "deception.banks" if Path(d).is_dir() else "deception.bank_dir"
    return [existing_file(f"{d}/{bank}.txt", key) for bank in config["deception"]["banks"]]


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


# Inoculation study (seed 003).
INOC = config["inoculation"]


def inoc_study():
    """Traits and prompts (dicts) from inoculation.prompts_file, validated at planning."""
    from dataclasses import asdict

    from interpflow.inoculation import load_study_file

    traits, prompts = load_study_file(INOC["prompts_file"])
    return traits, {k: asdict(p) for k, p in prompts.items()}


INOC_TRAITS, INOC_PROMPTS = inoc_study()


def inoc_runs():
    from interpflow.inoculation import run_names

    keys = INOC["training"]["prompts"]
    if keys is None:
        keys = list(INOC_PROMPTS)
    unknown = [k for k in keys if k not in INOC_PROMPTS]
    if unknown:
        raise ValueError(f"config key inoculation.training.prompts: unknown prompt keys {unknown}")
    return run_names(keys, INOC["training"]["conditions"])


INOC_RUNS = inoc_runs()
INOC_DATASETS = ["train", "neutral"] + [f"trait_{t}" for t in INOC_TRAITS]
INOC_JUDGES = {
    "trait": judge(INOC["judges"]["trait"], "inoculation.judges.trait"),
    "em": judge(INOC["judges"]["em"], "inoculation.judges.em") if INOC["judges"]["em"] else None,
    "rephrase": judge(INOC["rephrasings"]["judge"], "inoculation.rephrasings.judge"),
    "embedder": judge(INOC["embeddings"]["embedder"], "inoculation.embeddings.embedder")
    if INOC["embeddings"]["embedder"]
    else None,
}
EMBED_CACHE = "results/cache/embeddings.sqlite"


def inoc_text_embeddings_input(wildcards):
    """The text-embedding table, when inoculation.embeddings.embedder names a backend."""
    if not INOC["embeddings"]["embedder"]:
        return {}
    return {"text_embeddings": "results/inoculation/text_embeddings.parquet"}


def inoc_data_file(key):
    """inoculation.data.<key>: a file the user provides (see the README's table)."""
    return existing_file(INOC["data"][key], f"inoculation.data.{key}")


def inoc_data_params(wildcards):
    """How one data table is made: an external JSONL, or datagen under a system prompt."""
    d, ds = INOC["data"], wildcards.dataset
    if ds == "neutral":
        return dict(external=inoc_data_file("neutral_completions"), n=d["n_neutral"], system_prompt=None)
    if ds == "train":
        external = inoc_data_file("external_train_jsonl") if d["external_train_jsonl"] else None
        return dict(external=external, n=d["n_train"], system_prompt=INOC["datagen"]["system_prompt"])
    trait = INOC_TRAITS[ds.removeprefix("trait_")]
    if not trait["external_jsonl"] and not trait["datagen_system_prompt"]:
        raise ValueError(f"{INOC['prompts_file']}: traits.{ds[6:]} needs datagen_system_prompt or external_jsonl")
    return dict(external=trait.get("external_jsonl"), n=d["n_trait"], system_prompt=trait.get("datagen_system_prompt"))


def inoc_data_input(wildcards):
    p = inoc_data_params(wildcards)
    if p["external"]:
        return [p["external"]]
    return [inoc_data_file("train_instructions")] + model_input()


def inoc_eval_sets():
    d = INOC["data"]
    out = {"trait": inoc_data_file("eval_instructions")}
    if INOC["judges"]["em"] and d["em_questions"]:
        out["em"] = inoc_data_file("em_questions")
    return out


INOC_FIGURES = [
    "trait_vs_step",
    "elicitation_vs_suppression",
    "ph_vs_suppression",
    "embeddings",
    "angle_heatmap",
    "em_rates",
    "heuristic_correlations",
]


def inoculation_targets():
    o = "results/inoculation"
    return [f"{o}/figures/{f}.png" for f in INOC_FIGURES] + [
        f"{o}/figures/heuristic_correlations.csv",
        f"{o}/heuristics/W.safetensors",
    ]


# --- weight steering (seed 004) ---
STEER = config["steering"]


def steering_personas_path():
    """The persona file of steering.axis; a missing file fails at planning, naming the key."""
    return existing_file(f"{STEER['resource_dir']}/personas/{STEER['axis']}.json", "steering.axis")


def steering_eval_sets():
    """{eval set name: path}; null paths are skipped."""
    out = {k: v for k, v in STEER["eval"]["sets"].items() if v}
    if not out:
        raise ValueError("config key steering.eval.sets: name at least one eval set")
    return out


def steering_eval_inputs():
    """Local eval files (hub sets, `hf:<id>`, are loaded by the job)."""
    return [p for p in steering_eval_sets().values() if not p.startswith("hf:")]


def steering_eval_params():
    e = STEER["eval"]
    return dict(alphas=STEER["alphas"], answer_prefix=e["answer_prefix"], batch_size=e["batch_size"], n_rows=e["n_rows"])


def steering_adapter_config(wildcards):
    """Keyword arguments of interpflow.adapters.AdapterConfig for one family."""
    return dict(STEER["adapter"], family=wildcards.family)


def steering_report_evals():
    fams = STEER["families"]
    return (
        [f"results/steering/evals/weight_{f}.parquet" for f in fams]
        + [f"results/steering/diagnostics/{f}_projection.parquet" for f in fams]
        + ["results/steering/evals/repe.parquet", "results/steering/evals/prompts.parquet"]
    )


def steering_report_overlaps():
    return [f"results/steering/diagnostics/{f}_overlap.parquet" for f in STEER["families"]]


def steering_targets():
    r = "results/steering/report"
    return [f"{r}/{n}" for n in ("summary.json", "alpha_vs_score.png", "baselines_vs_weight.png", "pmass.png", "diagnostics.csv")]


def all_targets():
    return deception_targets() + tribunal_targets() + inoculation_targets() + steering_targets()
