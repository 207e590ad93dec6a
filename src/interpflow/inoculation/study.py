"""An inoculation instance's study file (traits + inoculation prompts) and its run names.

Read when the Snakefile is parsed (every SLURM job re-parses it): the standard library and
yaml only, nothing heavier.

A study file is YAML with ``traits`` (name -> ``description``, ``keywords``, ``pattern``,
``datagen_system_prompt``, ``completion_template``, ``external_jsonl``) and ``prompts`` (key ->
``trait``, ``text``; trait ``neutral`` for none). ``pattern`` (a regular expression) makes the
offline trait judge a rule: 9 when the response matches, else 0 (instead of keyword counts);
``completion_template`` (a format string with ``{completion}``) imposes the trait on the
trait-only datagen completions, for a style the base model cannot be prompted into. Runs are named ``none`` (no inoculation) or
``<prompt_key>-<condition>`` with condition ``fixed`` (the prompt as a user-turn prefix),
``mix`` (a rephrasing sampled per example) or ``system`` (the prompt as the system turn);
the emergent-misalignment runs of experiment 18 (``em`` block) use the system-prompt conditions
``system`` (fixed), ``system_mix`` (a rephrasing per example) and ``system_close`` (a close
rephrasing per example). A prompt may name its ``group`` (seed 003's v3 / v4 / neg / v5, or
an EM prompt type such as IDInoc), used to colour the figures.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from interpflow.config import ConfigError

CONDITIONS = ("fixed", "mix", "system", "system_mix", "system_close")
#: Conditions drawing a rephrasing per example, and the rephrasing table each draws from.
REPHRASED = ("mix", "system_mix", "system_close")
#: Experiment 18's system-prompt inoculation variants: fixed, rephrased, close-rephrased.
EM_CONDITIONS = ("system", "system_mix", "system_close")
#: The report's figures (``figures/<name>.png`` + ``figures/<name>.csv``); rule and stage.
FIGURES = (
    "trait_vs_step",
    "elicitation_vs_suppression",
    "ph_vs_suppression",
    "embeddings",
    "angle_heatmap",
    "em_rates",
    "heuristic_correlations",
    "predictors_vs_suppression",  # experiment 10's 2 x 4 scatter (per trait)
    "lls_metrics",  # experiment 13: PH - other PPD, gamma, sigma, SNR vs suppression
    "angle_cross_trait",  # experiment 19: angle per pair kind and representation
    "angle_per_prompt",  # experiment 19: each prompt's mean angle to each trait's prompts
    "angle_dim_suppression",  # experiment 19 Q1: signed PC/SV coordinate vs suppression
    "fixed_vs_mix_heuristics",  # experiment 20: 6 rows per trait x 10 heuristics
    "selfperp_vs_suppression",  # self-perplexity (raw, in context) vs suppression
    "selfperp_pca",  # W_fixed / W_mix PCA coloured by self-perplexity, suppression, H6
)
TRAIT_KEYS = (
    "description",
    "keywords",
    "pattern",
    "datagen_system_prompt",
    "completion_template",
    "external_jsonl",
)


def check_template(template: str, where: str) -> str:
    """``template`` if it is a format string with exactly the field ``{completion}``."""
    import string

    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"{where}: {template!r} is not a format string ({exc})") from None
    if fields != {"completion"}:
        raise ValueError(f"{where}: {template!r} must contain {{completion}} and no other field")
    return template


@dataclass(frozen=True)
class InocPrompt:
    """One inoculation prompt: its key, the trait it names ("neutral" for none), its text and
    its group (seed 003's v3 / v4 / neg / v5, an EM prompt type; "" for none)."""

    key: str
    trait: str
    text: str
    group: str = ""


def parse_prompts(
    prompts: Mapping[str, Mapping[str, str]], traits: Sequence[str]
) -> dict[str, InocPrompt]:
    """``{key: InocPrompt}`` from the study file's mapping, checking each trait is known."""
    out = {}
    for key, p in prompts.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise ValueError(f"inoculation.prompts: key {key!r} must match [A-Za-z0-9_]+")
        trait = p.get("trait", "neutral")
        if trait != "neutral" and trait not in traits:
            raise ValueError(
                f"inoculation.prompts.{key}.trait: {trait!r} is not a trait "
                f"({', '.join(traits)}) or 'neutral'"
            )
        if not str(p.get("text", "")).strip():
            raise ValueError(f"inoculation.prompts.{key}.text is empty")
        unknown = set(p) - {"trait", "text", "group"}
        if unknown:
            raise ValueError(f"inoculation.prompts.{key}: unknown keys {sorted(unknown)}")
        out[key] = InocPrompt(key, trait, str(p["text"]).strip(), str(p.get("group") or ""))
    return out


def load_study_file(
    path: str | Path, key: str = "inoculation.prompts_file"
) -> tuple[dict[str, dict], dict[str, InocPrompt]]:
    """``(traits, prompts)`` from a study file (YAML with ``traits`` and ``prompts``).

    Every error names the file and the key (``key``: the config key that names the file).
    Trait entries get defaults for missing keys.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config key {key}: file {path} does not exist")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or set(doc) - {"traits", "prompts"}:
        raise ValueError(f"{path}: expected a mapping with keys 'traits' and 'prompts'")
    raw_traits = doc.get("traits") or {}
    if not isinstance(raw_traits, dict) or not raw_traits:
        raise ValueError(f"{path}: 'traits' must map at least one trait name to its settings")
    traits = {}
    for name, t in raw_traits.items():
        if not isinstance(t, dict) or not isinstance(t.get("description"), str):
            raise ValueError(f"{path}: traits.{name} needs a string 'description'")  # noqa: TRY004
        unknown = set(t) - set(TRAIT_KEYS)
        if unknown:
            raise ValueError(f"{path}: traits.{name} has unknown keys {sorted(unknown)}")
        pattern = t.get("pattern")
        if pattern is not None:
            try:
                re.compile(str(pattern))
            except re.error as exc:
                raise ValueError(f"{path}: traits.{name}.pattern is not a regex ({exc})") from None
        template = t.get("completion_template") or "{completion}"
        traits[str(name)] = {
            "description": t["description"],
            "keywords": [str(k) for k in t.get("keywords") or []],
            "pattern": None if pattern is None else str(pattern),
            "datagen_system_prompt": t.get("datagen_system_prompt"),
            "completion_template": check_template(
                str(template), f"{path}: traits.{name}.completion_template"
            ),
            "external_jsonl": t.get("external_jsonl"),
        }
    raw_prompts = doc.get("prompts") or {}
    if not isinstance(raw_prompts, dict):
        raise ValueError(f"{path}: 'prompts' must map prompt keys to {{trait, text}}")  # noqa: TRY004
    try:
        prompts = parse_prompts(raw_prompts, list(traits))
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return traits, prompts


def run_names(
    prompt_keys: Sequence[str],
    conditions: Sequence[str],
    key: str = "inoculation.training",
    allowed: Sequence[str] = CONDITIONS,
) -> list[str]:
    """``none`` plus ``<key>-<condition>`` for every trained prompt and condition."""
    bad = [c for c in conditions if c not in allowed]
    if bad:
        raise ValueError(f"{key}.conditions: unknown {bad}; choose from {tuple(allowed)}")
    return ["none"] + [f"{k}-{c}" for k in prompt_keys for c in conditions]


def parse_run(run: str) -> tuple[str | None, str]:
    """``(prompt_key, condition)`` of a run name; ``(None, "none")`` for the control."""
    if run == "none":
        return None, "none"
    key, _, cond = run.rpartition("-")
    if not key or cond not in CONDITIONS:
        raise ValueError(f"bad inoculation run name {run!r}")
    return key, cond


@functools.cache
def _study_file(path: str) -> tuple[dict[str, dict], dict[str, dict]]:
    traits, prompts = load_study_file(path)
    return traits, {k: asdict(p) for k, p in prompts.items()}


def instance_plan(inst: Mapping, key: str) -> dict:
    """What an instance (its validated config ``inst``, config key ``key``) runs, checked at
    planning: ``traits`` and ``prompts`` (as dicts) of its study file (read once per path),
    its ``runs`` and its ``trait_datasets`` (``trait_<T>``)."""
    path = inst["prompts_file"]
    if not Path(path).is_file():
        raise ConfigError(f"config key {key}.prompts_file: file {path} does not exist")
    traits, prompts = _study_file(path)
    trained = inst["training"]["prompts"]
    trained = list(prompts) if trained is None else list(trained)
    unknown = [k for k in trained if k not in prompts]
    if unknown:
        raise ConfigError(f"config key {key}.training.prompts: {unknown} are not prompts of {path}")
    check_full_steps(inst, key)
    return {
        "traits": traits,
        "prompts": prompts,
        "runs": run_names(trained, inst["training"]["conditions"], f"{key}.training"),
        "trait_datasets": [f"trait_{t}" for t in traits],
        **em_plan(inst, key),
    }


def check_full_steps(inst: Mapping, key: str) -> None:
    """With ``training.drop_last`` every SFT set the instance trains on (``data.n_train``;
    ``data.n_em_train`` when experiment 18 is on) must fill one optimizer step of
    ``batch_size x grad_accum`` examples: fewer would train no step at all."""
    train, data = inst["training"], inst["data"]
    per_step = train["batch_size"] * train["grad_accum"]
    sizes = {} if inst["em"]["only"] else {"n_train": data["n_train"]}
    if data.get("em_train_jsonl"):
        sizes["n_em_train"] = data["n_em_train"]
    for name, n in sizes.items():
        if train.get("drop_last") and n is not None and n < per_step:
            raise ConfigError(
                f"config key {key}.training.drop_last: data.{name} = {n} examples make no full "
                f"optimizer step of batch_size x grad_accum = {per_step}; raise data.{name}, "
                "lower training.grad_accum or set training.drop_last false"
            )


def em_plan(inst: Mapping, key: str) -> dict:
    """Experiment 18 of an instance (its ``em`` block; off when ``data.em_train_jsonl`` is
    null): ``em_prompts`` (as dicts, from ``em.prompts_file``) and ``em_runs`` (``none`` plus
    ``<prompt>-<condition>`` over :data:`EM_CONDITIONS`); both empty when off."""
    em = inst["em"]
    if not inst["data"]["em_train_jsonl"]:
        if em["only"]:
            raise ConfigError(f"config key {key}.em.only: true needs {key}.data.em_train_jsonl")
        return {"em_prompts": {}, "em_runs": []}
    if not inst["judges"]["em"]:
        raise ConfigError(
            f"config key {key}.judges.em: experiment 18 (data.em_train_jsonl is set) needs an "
            "EM judge (coherence and alignment)"
        )
    path = em["prompts_file"]
    if not Path(path).is_file():
        raise ConfigError(f"config key {key}.em.prompts_file: file {path} does not exist")
    _, prompts = _study_file(path)
    trained = list(prompts) if em["prompts"] is None else list(em["prompts"])
    unknown = [k for k in trained if k not in prompts]
    if unknown:
        raise ConfigError(f"config key {key}.em.prompts: {unknown} are not prompts of {path}")
    return {
        "em_prompts": {k: prompts[k] for k in trained},
        "em_runs": run_names(trained, em["conditions"], f"{key}.em", EM_CONDITIONS),
    }


def data_spec(
    dataset: str, inst: Mapping, traits: Mapping, data_file: Callable[[str], str]
) -> dict:
    """How data table ``dataset`` of an instance (validated config ``inst``, study-file
    ``traits``) is made: ``external`` (a JSONL, or None: the base model writes it), ``n``,
    the datagen ``system_prompt`` and the ``completion_template`` its answers are put into. ``data_file(key)``: the instance's ``data.<key>``,
    checked to exist."""
    data = inst["data"]
    if dataset == "neutral":
        external = data_file("neutral_completions")
        return {
            "external": external,
            "n": data["n_neutral"],
            "system_prompt": None,
            "completion_template": "{completion}",
        }
    if dataset == "train":
        external = data_file("external_train_jsonl") if data["external_train_jsonl"] else None
        system_prompt = inst["datagen"]["system_prompt"]
        return {
            "external": external,
            "n": data["n_train"],
            "system_prompt": system_prompt,
            "completion_template": inst["datagen"]["completion_template"],
        }
    if dataset == "em":  # experiment 18's SFT set: the user's JSONL, never generated
        return {
            "external": data_file("em_train_jsonl"),
            "n": data["n_em_train"],
            "system_prompt": None,
            "completion_template": "{completion}",
        }
    name = dataset.removeprefix("trait_")
    if name not in traits:
        raise ConfigError(f"{inst['prompts_file']}: no trait {name!r} (data set {dataset})")
    trait = traits[name]
    imposed = trait["completion_template"] != "{completion}"
    if not trait["external_jsonl"] and not trait["datagen_system_prompt"] and not imposed:
        raise ConfigError(
            f"{inst['prompts_file']}: traits.{name} needs datagen_system_prompt, "
            "completion_template or external_jsonl"
        )
    return {
        "external": trait["external_jsonl"],
        "n": data["n_trait"],
        "system_prompt": trait["datagen_system_prompt"],
        "completion_template": trait["completion_template"],
    }


def eval_files(inst: Mapping, data_file: Callable[[str], str]) -> dict[str, str]:
    """The eval sets of an instance: its eval instructions, its held-out instructions of
    another kind when given and, with an EM judge and EM questions, the EM questions
    (``data_file`` as in :func:`data_spec`)."""
    out = {"eval_instructions": data_file("eval_instructions")}
    if inst["data"]["heldout_instructions"]:
        out["heldout_instructions"] = data_file("heldout_instructions")
    if inst["judges"]["em"] and inst["data"]["em_questions"]:
        out["em_questions"] = data_file("em_questions")
    return out


def em_eval_files(
    inst: Mapping, data_file: Callable[[str], str], key: str = "inoculation.<instance>"
) -> dict[str, str]:
    """The eval sets of experiment 18's runs: the general EM questions (``data.em_questions``)
    and, when given, the held-out in-distribution questions (``data.em_id_questions``);
    ``key``: the instance's config key, named in the error."""
    if not inst["data"]["em_questions"]:
        raise ConfigError(
            f"config key {key}.data.em_questions: experiment 18 (data.em_train_jsonl) needs "
            "the EM questions (its eval), not null"
        )
    out = {"em_questions": data_file("em_questions")}
    if inst["data"]["em_id_questions"]:
        out["id_questions"] = data_file("em_id_questions")
    return out
