# Seed 003, inoculation prompting: data -> rephrasings -> logprobs -> heuristics,
# and SFT sets -> adapters (shared trainer) -> evals -> judged scores -> figures.
# Every instance (config key inoculation.<instance>) lives under results/inoculation/<instance>/;
# its traits and prompts come from its prompts_file, read at planning (interpflow.inoculation
# .study: standard library + yaml).
#
# This file: the study's plan (INOC), the input functions stages share, the target list. Each
# stage's rule is in the file named after its group: inoculation_data.smk (data, rephrasings),
# inoculation_heuristics.smk (logprobs, text_embeddings, heuristics), inoculation_train.smk
# (sft, train), inoculation_eval.smk (eval, scores), inoculation_report.smk (report, findings),
# inoculation_em.smk (em_*, experiment 18), inoculation_elicitation.smk (elicitation_*).

from functools import reduce

from interpflow.inoculation.study import FIGURES as INOC_FIGURES
from interpflow.inoculation.study import instance_plan, parse_run
from interpflow.judges import check_number_tokens

INOC_OUT = "results/inoculation/{instance}"
INOC_LOG = "logs/inoculation/{instance}"
INOC_BENCH = "benchmarks/results/inoculation/{instance}"


# Input and params functions and the target list are lambdas: `snakemake --lint` flags a file
# that mixes rules with function definitions.

# Judge roles -> the (block, key) of the instance config naming the judge.
INOC_JUDGE_KEYS = {
    "trait": ("judges", "trait"),
    "em": ("judges", "em"),
    "rephrase": ("rephrasings", "judge"),
    "embedder": ("embeddings", "embedder"),
}

# instance -> what it runs: traits, prompts, runs, trait_datasets (interpflow.inoculation.study
# .instance_plan) and judges (kwargs; null where the config names none). An unknown prompt,
# judge, a missing study file, local judge model or API key fails here, at planning.
INOC = {
    name: instance_plan(inst, f"inoculation.{name}")
    | {
        "judges": {
            role: (
                judge(inst[block][key], f"inoculation.{name}.{block}.{key}")
                if inst[block][key]
                else None
            )
            for role, (block, key) in INOC_JUDGE_KEYS.items()
        }
    }
    for name, inst in INSTANCES["inoculation"].items()
}

# A percent-scale judge's first token is read as a number 0-100: an hf judge whose tokenizer
# (read here from its local model directory) writes such numbers as several tokens fails at
# planning, naming inoculation.<instance>.judges.<role>_scale. (role, instance) -> whether it
# was read here; where not (a judge model a rule builds, a hub id), the judging job checks.
INOC_SCALES_READ = {
    (role, name): check_number_tokens(
        cfg=JudgeConfig(**INOC[name]["judges"][role]),
        scale=inst["judges"][f"{role}_scale"],
        key=f"inoculation.{name}.judges.{role}_scale",
        load=False,
    )
    for name, inst in INSTANCES["inoculation"].items()
    for role in ("trait", "em")
    if INOC[name]["judges"][role]
}

# Training in 4 bit (training.quantization: nf4) an adapter family that PEFT cannot train on a
# 4-bit base (PiSSA, DeLoRA: interpflow.kbit) stops here, naming the keys.
check_kbit_families(
    "inoculation",
    "training",
    lambda inst: ([inst["training"]["adapter"]["family"]], "training.adapter.family"),
)

# A params/input function: the job's instance plan (INOC) at `keys`.
inoc = lambda *keys: lambda wildcards: reduce(
    lambda value, key: value[key], keys, INOC[instance_name("inoculation", wildcards)]
)

# An input function: `pattern` (a path with {instance} and {item}) for every item of the job's
# instance plan at `key` (its runs, its trait datasets).
inoc_each = lambda pattern, key: lambda wildcards: [
    pattern.format(instance=wildcards.instance, item=item)
    for item in inoc(key)(wildcards)
]

# inoculation.<instance>.data.<key> of the job's instance: a file the user provides (a missing
# one fails at planning, naming the key).
inoc_data_file = lambda wildcards: lambda key: existing_file(
    instance("inoculation", wildcards)["data"][key],
    f"inoculation.{wildcards.instance}.data.{key}",
)

# Eval set sizes of the job's instance (id: experiment 18's in-distribution questions;
# heldout: the held-out instructions of another kind).
inoc_eval_n = lambda wildcards: {
    "eval": instance("inoculation", wildcards)["data"]["n_eval"],
    "em": instance("inoculation", wildcards)["data"]["n_em"],
    "id": instance("inoculation", wildcards)["data"]["n_em_id"],
    "heldout": instance("inoculation", wildcards)["data"]["n_heldout"],
}

# The rephrasing table, for a mix run (the only condition that draws from it).
inoc_rephrasings_input = lambda wildcards: (
    {
        "rephrasings": f"{INOC_OUT}/rephrasings.parquet".format(
            instance=wildcards.instance
        )
    }
    if parse_run(wildcards.run)[1] == "mix"
    else {}
)

# Whether an instance trains any inoculation prompt (a run besides `none`): without one there
# is no suppression to predict, so no logprobs, heuristics or heuristic figures.
inoc_inoculated = lambda name: len(INOC[name]["runs"]) > 1

# The instances pooled by inoculation_pooled: those that train an inoculation prompt and make
# the trait figures (not em.only), in config order.
inoc_pooled = lambda: [
    name
    for name, inst in INSTANCES["inoculation"].items()
    if inoc_inoculated(name) and not inst["em"]["only"]
]

# The end products of every inoculation instance (rule all): figures (+ their numbers), the
# findings and, for an inoculating instance, the heuristics' W matrices; with experiment 18,
# its EM rates and figure (and nothing else with em.only); the correlations pooled across the
# inoculating instances (inoculation_pooled).
inoculation_targets = lambda: [
    f"results/inoculation/{name}/{target}"
    for name, inst in INSTANCES["inoculation"].items()
    for target in [
        *(
            []
            if inst["em"]["only"]
            else [
                *(f"figures/{f}.{ext}" for f in INOC_FIGURES for ext in ("png", "csv")),
                "dataset.csv",
                "findings.json",
                *(["heuristics/W.safetensors"] if inoc_inoculated(name) else []),
            ]
        ),
        *(
            ["em/em_rates.parquet", "figures/em_inoculation.png", "figures/em_inoculation.csv"]
            if INOC[name]["em_runs"]
            else []
        ),
        *(["findings.json"] if inst["em"]["only"] else []),
        *(
            ["figures/elicitation.png", "figures/elicitation.csv"]
            if inst["elicitation"]["enabled"] and not inst["em"]["only"]
            else []
        ),
    ]
] + (
    [f"results/inoculation/_pooled/heuristic_correlations.{ext}" for ext in ("png", "csv")]
    if inoc_pooled()
    else []
)


wildcard_constraints:
    dataset="train|neutral|em|trait_[A-Za-z0-9_]+",
    run="none|[A-Za-z0-9_]+-(fixed|mix|system|system_mix|system_close)",
    rephrased="system_mix|system_close",
