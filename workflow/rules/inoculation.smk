# Seed 003, inoculation prompting: data -> rephrasings -> logprobs -> heuristics,
# and SFT sets -> adapters (shared trainer) -> evals -> judged scores -> figures.
# Every instance (config key inoculation.<instance>) lives under results/inoculation/<instance>/;
# its traits and prompts come from its prompts_file, read at planning (interpflow.inoculation
# .study: standard library + yaml).

from functools import reduce

from interpflow.inoculation.study import FIGURES as INOC_FIGURES
from interpflow.inoculation.study import (
    data_spec,
    em_eval_files,
    eval_files,
    instance_plan,
    parse_run,
)
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

# How the job's data table is made: an external JSONL, or datagen under a system prompt.
inoc_data_spec = lambda wildcards: data_spec(
    wildcards.dataset,
    instance("inoculation", wildcards),
    inoc("traits")(wildcards),
    inoc_data_file(wildcards),
)

# An external JSONL, or the instruction bank and the model that answers it.
inoc_data_input = lambda wildcards: (
    {"external": external}
    if (external := inoc_data_spec(wildcards)["external"])
    else {
        "instructions": inoc_data_file(wildcards)("train_instructions"),
        "model": model_input("inoculation")(wildcards),
    }
)

# The eval instructions and, with an EM judge, the EM questions.
inoc_eval_input = lambda wildcards: eval_files(
    instance("inoculation", wildcards), inoc_data_file(wildcards)
)

# Eval set sizes of the job's instance (id: experiment 18's in-distribution questions;
# heldout: the held-out instructions of another kind).
inoc_eval_n = lambda wildcards: {
    "eval": instance("inoculation", wildcards)["data"]["n_eval"],
    "em": instance("inoculation", wildcards)["data"]["n_em"],
    "id": instance("inoculation", wildcards)["data"]["n_em_id"],
    "heldout": instance("inoculation", wildcards)["data"]["n_heldout"],
}

# Experiment 18's eval sets: the EM questions and, when given, the in-distribution ones.
inoc_em_eval_input = lambda wildcards: em_eval_files(
    instance("inoculation", wildcards),
    inoc_data_file(wildcards),
    f"inoculation.{wildcards.instance}",
)

# Experiment 18's rephrasings (system_mix) or close rephrasings (system_close), for a run
# that draws from them.
inoc_em_rephrasings_input = lambda wildcards: (
    {
        "rephrasings": f"{INOC_OUT}/em/rephrasings_{cond}.parquet".format(
            instance=wildcards.instance
        )
    }
    if (cond := parse_run(wildcards.run)[1]) in ("system_mix", "system_close")
    else {}
)

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

# The heuristics behind the report's predictor figures, for an inoculating instance.
inoc_heuristics_input = lambda wildcards: (
    {
        name: f"{INOC_OUT}/heuristics/{file}".format(instance=wildcards.instance)
        for name, file in (
            ("heuristics", "heuristics.parquet"),
            ("embeddings", "embeddings.parquet"),
            ("angles", "angles.parquet"),
            ("angle_summary", "angle_summary.parquet"),
            ("meta", "W.json"),
            ("matrices", "W.safetensors"),
        )
    }
    if inoc_inoculated(instance_name("inoculation", wildcards))
    else {}
)

# The text-embedding table, when the instance's embeddings.embedder names a backend.
inoc_text_embeddings_input = lambda wildcards: (
    {
        "text_embeddings": f"{INOC_OUT}/text_embeddings.parquet".format(
            instance=wildcards.instance
        )
    }
    if instance("inoculation", wildcards)["embeddings"]["embedder"]
    else {}
)

# Whether the job's instance runs experiment 18 alone (em.only).
inoc_em_only = lambda wildcards: instance("inoculation", wildcards)["em"]["only"]

# The findings' tables: the scores stage's (the held-out set's too: empty without one), or
# (em.only) experiment 18's EM rates.
inoc_findings_input = lambda wildcards: (
    {"em_rates": f"{INOC_OUT}/em/em_rates.parquet".format(instance=wildcards.instance)}
    if inoc_em_only(wildcards)
    else {
        name: f"{INOC_OUT}/scores/{name}.parquet".format(instance=wildcards.instance)
        for name in ("summary", "suppression", "learning")
        + ("heldout_summary", "heldout_suppression", "heldout_learning")
    }
)

# The end products of every inoculation instance (rule all): figures (+ their numbers), the
# findings and, for an inoculating instance, the heuristics' W matrices; with experiment 18,
# its EM rates and figure (and nothing else with em.only).
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
]


wildcard_constraints:
    dataset="train|neutral|em|trait_[A-Za-z0-9_]+",
    run="none|[A-Za-z0-9_]+-(fixed|mix|system|system_mix|system_close)",
    rephrased="system_mix|system_close",


rule inoculation_data:
    input:
        unpack(inoc_data_input),
    output:
        f"{INOC_OUT}/data/{{dataset}}.parquet",
    log:
        f"{INOC_LOG}/data/{{dataset}}.log",
    benchmark:
        f"{INOC_BENCH}/data/{{dataset}}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        spec=inoc_data_spec,
        datagen=setting("inoculation", "datagen"),
        model=model_spec("inoculation"),
        code=code_hash("inoculation/data"),
    script:
        "../../scripts/inoculation/data.py"


rule inoculation_rephrasings:
    output:
        table=f"{INOC_OUT}/rephrasings.parquet",
        summary=f"{INOC_OUT}/rephrasings.parquet.summary.json",
    log:
        f"{INOC_LOG}/rephrasings.log",
    conda:
        "../../envs/judge.yaml"
    params:
        prompts=inoc("prompts"),
        n=setting("inoculation", "rephrasings", "n"),
        judge=inoc("judges", "rephrase"),
        cache=JUDGE_CACHE,
        code=code_hash("inoculation/rephrasings"),
    script:
        "../../scripts/inoculation/rephrasings.py"


rule inoculation_logprobs:
    input:
        train=f"{INOC_OUT}/data/train.parquet",
        neutral=f"{INOC_OUT}/data/neutral.parquet",
        traits=inoc_each(f"{INOC_OUT}/data/{{item}}.parquet", "trait_datasets"),
        rephrasings=f"{INOC_OUT}/rephrasings.parquet",
        model=model_input("inoculation"),
    output:
        train=f"{INOC_OUT}/logprobs/train.parquet",
        train_tokens=f"{INOC_OUT}/logprobs/train.tokens.parquet",
        neutral=f"{INOC_OUT}/logprobs/neutral.parquet",
        neutral_tokens=f"{INOC_OUT}/logprobs/neutral.tokens.parquet",
        traits=f"{INOC_OUT}/logprobs/traits.parquet",
        traits_tokens=f"{INOC_OUT}/logprobs/traits.tokens.parquet",
        selfperp=f"{INOC_OUT}/logprobs/selfperp.parquet",
    log:
        f"{INOC_LOG}/logprobs.log",
    benchmark:
        f"{INOC_BENCH}/logprobs.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        trait_datasets=inoc("trait_datasets"),
        prompts=inoc("prompts"),
        default_system=setting("inoculation", "default_system"),
        batch_size=setting("inoculation", "logprobs", "batch_size"),
        subsample=setting("inoculation", "logprobs", "subsample"),
        subsample_seed=setting("inoculation", "logprobs", "subsample_seed"),
        model=model_spec("inoculation"),
        model_id=model_id("inoculation"),
        code=code_hash("inoculation/logprobs"),
    script:
        "../../scripts/inoculation/logprobs.py"


rule inoculation_text_embeddings:
    input:
        rephrasings=f"{INOC_OUT}/rephrasings.parquet",
    output:
        table=f"{INOC_OUT}/text_embeddings.parquet",
        summary=f"{INOC_OUT}/text_embeddings.parquet.summary.json",
    log:
        f"{INOC_LOG}/text_embeddings.log",
    conda:
        "../../envs/judge.yaml"
    params:
        prompts=inoc("prompts"),
        embeddings=setting("inoculation", "embeddings"),
        embedder=inoc("judges", "embedder"),
        cache=EMBED_CACHE,
        code=code_hash("inoculation/text_embeddings"),
    script:
        "../../scripts/inoculation/text_embeddings.py"


rule inoculation_heuristics:
    input:
        unpack(inoc_text_embeddings_input),
        train=f"{INOC_OUT}/logprobs/train.parquet",
        train_tokens=f"{INOC_OUT}/logprobs/train.tokens.parquet",
        neutral=f"{INOC_OUT}/logprobs/neutral.parquet",
        traits=f"{INOC_OUT}/logprobs/traits.parquet",
        selfperp=f"{INOC_OUT}/logprobs/selfperp.parquet",
    output:
        table=f"{INOC_OUT}/heuristics/heuristics.parquet",
        embeddings=f"{INOC_OUT}/heuristics/embeddings.parquet",
        angles=f"{INOC_OUT}/heuristics/angles.parquet",
        angle_summary=f"{INOC_OUT}/heuristics/angle_summary.parquet",
        matrices=f"{INOC_OUT}/heuristics/W.safetensors",
        meta=f"{INOC_OUT}/heuristics/W.json",
    log:
        f"{INOC_LOG}/heuristics.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        traits=lambda wildcards: list(inoc("traits")(wildcards)),
        prompts=inoc("prompts"),
        heuristics=setting("inoculation", "heuristics"),
        code=code_hash("inoculation/heuristics"),
    script:
        "../../scripts/inoculation/heuristics.py"


rule inoculation_sft:
    input:
        unpack(inoc_rephrasings_input),
        data=f"{INOC_OUT}/data/train.parquet",
    output:
        f"{INOC_OUT}/sft/{{run}}.parquet",
    log:
        f"{INOC_LOG}/sft/{{run}}.log",
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    params:
        prompts=inoc("prompts"),
        default_system=setting("inoculation", "default_system"),
        seed=setting("inoculation", "training", "seed"),
        code=code_hash("inoculation/sft"),
    script:
        "../../scripts/inoculation/sft.py"


rule inoculation_train:
    input:
        data=f"{INOC_OUT}/sft/{{run}}.parquet",
        model=model_input("inoculation"),
    output:
        directory(f"{INOC_OUT}/adapters/{{run}}"),
    log:
        f"{INOC_LOG}/train/{{run}}.log",
    benchmark:
        f"{INOC_BENCH}/train/{{run}}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        model=model_spec("inoculation"),
        training=setting("inoculation", "training"),
        code=code_hash("inoculation/train"),
    script:
        "../../scripts/inoculation/train.py"


rule inoculation_eval:
    input:
        unpack(inoc_eval_input),
        unpack(inoc_rephrasings_input),
        adapter=f"{INOC_OUT}/adapters/{{run}}",
        model=model_input("inoculation"),
    output:
        f"{INOC_OUT}/evals/{{run}}.parquet",
    log:
        f"{INOC_LOG}/eval/{{run}}.log",
    benchmark:
        f"{INOC_BENCH}/eval/{{run}}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        n=inoc_eval_n,
        prompts=inoc("prompts"),
        default_system=setting("inoculation", "default_system"),
        eval=setting("inoculation", "eval"),
        model=model_spec("inoculation"),
        code=code_hash("inoculation/eval"),
    script:
        "../../scripts/inoculation/eval.py"


rule inoculation_scores:
    input:
        evals=inoc_each(f"{INOC_OUT}/evals/{{item}}.parquet", "runs"),
    output:
        scores=f"{INOC_OUT}/scores/scores.parquet",
        summary=f"{INOC_OUT}/scores/summary.parquet",
        em=f"{INOC_OUT}/scores/em_rates.parquet",
        suppression=f"{INOC_OUT}/scores/suppression.parquet",
        learning=f"{INOC_OUT}/scores/learning.parquet",
        # the held-out set of another kind (data.heldout_instructions; empty without one)
        heldout_summary=f"{INOC_OUT}/scores/heldout_summary.parquet",
        heldout_suppression=f"{INOC_OUT}/scores/heldout_suppression.parquet",
        heldout_learning=f"{INOC_OUT}/scores/heldout_learning.parquet",
    log:
        f"{INOC_LOG}/scores.log",
    benchmark:
        f"{INOC_BENCH}/scores.tsv"
    conda:
        "../../envs/judge.yaml"
    params:
        traits=inoc("traits"),
        trait_judge=inoc("judges", "trait"),
        em_judge=inoc("judges", "em"),
        min_mass=setting("inoculation", "judges", "min_mass"),
        trait_scale=setting("inoculation", "judges", "trait_scale"),
        em_scale=setting("inoculation", "judges", "em_scale"),
        cache=JUDGE_CACHE,
        code=code_hash("inoculation/scores"),
    script:
        "../../scripts/inoculation/scores.py"


rule inoculation_report:
    input:
        unpack(inoc_heuristics_input),
        unpack(
            lambda wildcards: (
                {
                    "screen": f"{INOC_OUT}/elicitation/elicitation.parquet".format(
                        instance=wildcards.instance
                    )
                }
                if instance("inoculation", wildcards)["elicitation"]["enabled"]
                else {}
            )
        ),
        summary=f"{INOC_OUT}/scores/summary.parquet",
        suppression=f"{INOC_OUT}/scores/suppression.parquet",
        em=f"{INOC_OUT}/scores/em_rates.parquet",
    output:
        figures=[
            report(
                f"{INOC_OUT}/figures/{f}.png",
                caption=f"../report/inoculation/{f}.rst",
                category="Inoculation",
                subcategory="{instance}",
            )
            for f in INOC_FIGURES
        ],
        tables=expand(
            f"{INOC_OUT}/figures/{{f}}.csv", f=INOC_FIGURES, allow_missing=True
        ),
        dataset=f"{INOC_OUT}/dataset.csv",
    log:
        f"{INOC_LOG}/report.log",
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    params:
        figures=list(INOC_FIGURES),
        prompts=inoc("prompts"),
        code=code_hash("inoculation/report"),
    script:
        "../../scripts/inoculation/report.py"


# The headline beside its controls (interpflow.findings rows): each inoculated run's
# suppression of its prompt's trait (paired by eval item) beside the base model and what the
# runs learned over it, from the scores stage's tables. No model: local.
rule inoculation_findings:
    input:
        unpack(inoc_findings_input),
    output:
        findings=f"{INOC_OUT}/findings.json",
    log:
        f"{INOC_LOG}/findings.log",
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    params:
        runs=lambda wildcards: inoc("em_runs" if inoc_em_only(wildcards) else "runs")(wildcards),
        prompts=lambda wildcards: inoc("em_prompts" if inoc_em_only(wildcards) else "prompts")(
            wildcards
        ),
        model=model_id("inoculation"),
        code=code_hash("inoculation/findings"),
    script:
        "../../scripts/inoculation/findings.py"


# Experiment 18 (emergent misalignment, on when data.em_train_jsonl is set): the same stages
# on the EM data under em/, with system-prompt conditions system (fixed), system_mix
# (rephrased) and system_close (close-rephrased); the rephrasing, SFT, training and eval
# scripts are the trait runs' (scripts/inoculation/{rephrasings,sft,train,eval}.py).
rule inoculation_em_rephrasings:
    output:
        table=f"{INOC_OUT}/em/rephrasings_{{rephrased}}.parquet",
        summary=f"{INOC_OUT}/em/rephrasings_{{rephrased}}.parquet.summary.json",
    log:
        f"{INOC_LOG}/em/rephrasings_{{rephrased}}.log",
    conda:
        "../../envs/judge.yaml"
    params:
        prompts=inoc("em_prompts"),
        n=setting("inoculation", "rephrasings", "n"),
        judge=inoc("judges", "rephrase"),
        style=lambda wildcards: "close" if wildcards.rephrased == "system_close" else "diverse",
        cache=JUDGE_CACHE,
        code=code_hash("inoculation/rephrasings"),
    script:
        "../../scripts/inoculation/rephrasings.py"


rule inoculation_em_sft:
    input:
        unpack(inoc_em_rephrasings_input),
        data=f"{INOC_OUT}/data/em.parquet",
    output:
        f"{INOC_OUT}/em/sft/{{run}}.parquet",
    log:
        f"{INOC_LOG}/em/sft/{{run}}.log",
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    params:
        prompts=inoc("em_prompts"),
        default_system=setting("inoculation", "default_system"),
        seed=setting("inoculation", "training", "seed"),
        code=code_hash("inoculation/sft"),
    script:
        "../../scripts/inoculation/sft.py"


rule inoculation_em_train:
    input:
        data=f"{INOC_OUT}/em/sft/{{run}}.parquet",
        model=model_input("inoculation"),
    output:
        directory(f"{INOC_OUT}/em/adapters/{{run}}"),
    log:
        f"{INOC_LOG}/em/train/{{run}}.log",
    benchmark:
        f"{INOC_BENCH}/em/train/{{run}}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        model=model_spec("inoculation"),
        training=setting("inoculation", "training"),
        code=code_hash("inoculation/train"),
    script:
        "../../scripts/inoculation/train.py"


rule inoculation_em_eval:
    input:
        unpack(inoc_em_eval_input),
        unpack(inoc_em_rephrasings_input),
        adapter=f"{INOC_OUT}/em/adapters/{{run}}",
        model=model_input("inoculation"),
    output:
        f"{INOC_OUT}/em/evals/{{run}}.parquet",
    log:
        f"{INOC_LOG}/em/eval/{{run}}.log",
    benchmark:
        f"{INOC_BENCH}/em/eval/{{run}}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        n=inoc_eval_n,
        prompts=inoc("em_prompts"),
        default_system=setting("inoculation", "default_system"),
        eval=setting("inoculation", "eval"),
        model=model_spec("inoculation"),
        code=code_hash("inoculation/eval"),
    script:
        "../../scripts/inoculation/eval.py"


rule inoculation_em:
    input:
        evals=inoc_each(f"{INOC_OUT}/em/evals/{{item}}.parquet", "em_runs"),
    output:
        scores=f"{INOC_OUT}/em/scores.parquet",
        rates=f"{INOC_OUT}/em/em_rates.parquet",
        png=report(
            f"{INOC_OUT}/figures/em_inoculation.png",
            caption="../report/inoculation/em_inoculation.rst",
            category="Inoculation",
            subcategory="{instance}",
        ),
        csv=f"{INOC_OUT}/figures/em_inoculation.csv",
    log:
        f"{INOC_LOG}/em/em.log",
    benchmark:
        f"{INOC_BENCH}/em/em.tsv"
    conda:
        "../../envs/judge.yaml"
    params:
        prompts=inoc("em_prompts"),
        em_judge=inoc("judges", "em"),
        min_mass=setting("inoculation", "judges", "min_mass"),
        scale=setting("inoculation", "judges", "em_scale"),
        cache=JUDGE_CACHE,
        code=code_hash("inoculation/em"),
    script:
        "../../scripts/inoculation/em.py"


# The elicitation screen (elicitation.enabled): the base model's answers to the eval
# instructions with no prefix and under every prompt as a fixed prefix (one model load), then
# each trait judged and the paired elicitation per prompt.
rule inoculation_elicitation_completions:
    input:
        eval_instructions=lambda wildcards: inoc_data_file(wildcards)("eval_instructions"),
        model=model_input("inoculation"),
    output:
        f"{INOC_OUT}/elicitation/completions.parquet",
    log:
        f"{INOC_LOG}/elicitation/completions.log",
    benchmark:
        f"{INOC_BENCH}/elicitation/completions.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        n_eval=lambda wildcards: (
            instance("inoculation", wildcards)["elicitation"]["n_eval"]
            or instance("inoculation", wildcards)["data"]["n_eval"]
        ),
        prompts=inoc("prompts"),
        default_system=setting("inoculation", "default_system"),
        eval=setting("inoculation", "eval"),
        model=model_spec("inoculation"),
        code=code_hash("inoculation/elicitation_completions"),
    script:
        "../../scripts/inoculation/elicitation_completions.py"


rule inoculation_elicitation:
    input:
        completions=f"{INOC_OUT}/elicitation/completions.parquet",
    output:
        scores=f"{INOC_OUT}/elicitation/scores.parquet",
        table=f"{INOC_OUT}/elicitation/elicitation.parquet",
        png=report(
            f"{INOC_OUT}/figures/elicitation.png",
            caption="../report/inoculation/elicitation.rst",
            category="Inoculation",
            subcategory="{instance}",
        ),
        csv=f"{INOC_OUT}/figures/elicitation.csv",
    log:
        f"{INOC_LOG}/elicitation/elicitation.log",
    conda:
        "../../envs/judge.yaml"
    params:
        prompts=inoc("prompts"),
        traits=inoc("traits"),
        trait_judge=inoc("judges", "trait"),
        min_mass=setting("inoculation", "judges", "min_mass"),
        scale=setting("inoculation", "judges", "trait_scale"),
        cache=JUDGE_CACHE,
        code=code_hash("inoculation/elicitation"),
    script:
        "../../scripts/inoculation/elicitation.py"
