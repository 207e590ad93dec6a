# Seed 004, weight steering: persona data -> theta+/theta- adapters per family -> dW ->
# alpha-sweep evals + subspace diagnostics; RepE and prompt baselines; report figures.
# Every instance (config key steering.<instance>) lives under results/steering/<instance>/.

import re

STEERING = "results/steering/{instance}"
STEERING_REPORT_FILES = [
    "summary.json",
    "alpha_vs_score.png",
    "baselines_vs_weight.png",
    "pmass.png",
    "diagnostics.csv",
]


# Input functions and the target list are lambdas: `snakemake --lint` flags a file that
# mixes rules with function definitions.

# Training in 4 bit (train.quantization: nf4) a family that PEFT cannot train on a 4-bit base
# (PiSSA, DeLoRA: interpflow.kbit) stops here, naming the keys.
check_kbit_families("steering", "train", lambda inst: (inst["families"], "families"))

# The config key of the job's instance (named in error messages).
steering_key = lambda wildcards: f"steering.{instance_name('steering', wildcards)}"

# The persona file of the instance's axis; a missing one fails at planning, naming the key.
steering_personas = lambda wildcards: existing_file(
    "{resource_dir}/personas/{axis}.json".format(**instance("steering", wildcards)),
    f"{steering_key(wildcards)}.axis",
)

# The AxBench-design engineered prompts of the instance's axis (the baselines stage); none
# when baselines.engineered is off.
steering_engineered = lambda wildcards: (
    existing_file(
        "{resource_dir}/engineered/{axis}.json".format(**instance("steering", wildcards)),
        f"{steering_key(wildcards)}.axis",
    )
    if instance("steering", wildcards)["baselines"]["engineered"]
    else []
)

# {eval set name: path} of the instance; null paths are skipped (the schema wants one set).
steering_eval_sets = lambda wildcards: {
    name: path
    for name, path in instance("steering", wildcards)["eval"]["sets"].items()
    if path
}

# The local eval files (hub sets, hf:<id>, are loaded by the job).
steering_eval_files = lambda wildcards: [
    path
    for path in steering_eval_sets(wildcards).values()
    if not path.startswith("hf:")
]

# Keyword arguments of interpflow.steering.common.EvalConfig: alphas, and eval less its sets.
steering_eval_params = lambda wildcards: {
    "alphas": instance("steering", wildcards)["alphas"],
    **{k: v for k, v in instance("steering", wildcards)["eval"].items() if k != "sets"},
}

# The instance's per-family files named by `patterns` (report inputs).
steering_families = lambda *patterns: lambda wildcards: expand(
    [f"{STEERING}/{pattern}" for pattern in patterns],
    instance=instance_name("steering", wildcards),
    family=instance("steering", wildcards)["families"],
)

# Training-seed sweeps: {base: {instance: seed}} of the instances named <base>-seed<N> whose
# train.seed is N (a sweep over train.seed), for bases with two seeds or more.
steering_seed_groups = lambda: {
    base: members
    for base, members in [
        (
            base,
            {
                name: int(name.rsplit("-seed", 1)[1])
                for name, inst in INSTANCES["steering"].items()
                if re.fullmatch(r"(.+)-seed(-?\d+)", name)
                and name.rsplit("-seed", 1)[0] == base
                and (inst.get("train") or {}).get("seed") == int(name.rsplit("-seed", 1)[1])
            },
        )
        for base in {
            name.rsplit("-seed", 1)[0]
            for name in INSTANCES["steering"]
            if re.fullmatch(r"(.+)-seed(-?\d+)", name)
        }
    ]
    if len(members) >= 2
}

# The report files and findings of every steering instance, and each seed sweep's across-seed
# table (rule all).
steering_targets = (
    lambda: expand(
        f"{STEERING}/report/{{file}}",
        instance=list(INSTANCES["steering"]),
        file=STEERING_REPORT_FILES,
    )
    + expand(f"{STEERING}/findings.json", instance=list(INSTANCES["steering"]))
    + expand("results/steering/{group}-seeds/seeds.json", group=sorted(steering_seed_groups()))
)


wildcard_constraints:
    family="lora|dora|pissa|delora|oft|ia3",
    group="[^/]+",


rule steering_data:
    input:
        personas=steering_personas,
        questions=setting("steering", "questions"),
        model=model_input("steering"),
    output:
        pos=f"{STEERING}/data/pos.parquet",
        neg=f"{STEERING}/data/neg.parquet",
    log:
        "logs/steering/{instance}/data.log",
    benchmark:
        "benchmarks/results/steering/{instance}/data.tsv"
    params:
        model=model_spec("steering"),
        data=setting("steering", "data"),
        key=steering_key,
        code=code_hash("steering/data"),
    threads: model_threads("steering")
    resources:
        gpu=model_gpus("steering"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering/data.py"


rule steering_adapters:
    input:
        pos=f"{STEERING}/data/pos.parquet",
        neg=f"{STEERING}/data/neg.parquet",
        model=model_input("steering"),
    output:
        pos=directory(f"{STEERING}/adapters/{{family}}/pos"),
        neg=directory(f"{STEERING}/adapters/{{family}}/neg"),
        dw=f"{STEERING}/dw/{{family}}.safetensors",
        norms=f"{STEERING}/dw/{{family}}.norms.json",
    log:
        "logs/steering/{instance}/adapters/{family}.log",
    benchmark:
        "benchmarks/results/steering/{instance}/adapters/{family}.tsv"
    params:
        model=model_spec("steering"),
        adapter=setting("steering", "adapter"),
        train=setting("steering", "train"),
        key=steering_key,
        code=code_hash("steering/adapters"),
    threads: model_threads("steering")
    resources:
        gpu=model_gpus("steering"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering/adapters.py"


rule steering_eval:
    input:
        dw=f"{STEERING}/dw/{{family}}.safetensors",
        personas=steering_personas,
        questions=setting("steering", "questions"),
        eval_sets=steering_eval_files,
        model=model_input("steering"),
    output:
        evals=f"{STEERING}/evals/weight_{{family}}.parquet",
        overlap=f"{STEERING}/diagnostics/{{family}}_overlap.parquet",
        projection=f"{STEERING}/diagnostics/{{family}}_projection.parquet",
    log:
        "logs/steering/{instance}/eval/{family}.log",
    benchmark:
        "benchmarks/results/steering/{instance}/eval/{family}.tsv"
    params:
        model=model_spec("steering"),
        eval_sets=steering_eval_sets,
        eval=steering_eval_params,
        diagnostics=setting("steering", "diagnostics"),
        key=steering_key,
        code=code_hash("steering/eval"),
    threads: model_threads("steering")
    resources:
        gpu=model_gpus("steering"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering/eval.py"


rule steering_baselines:
    input:
        personas=steering_personas,
        questions=setting("steering", "questions"),
        prompts=setting("steering", "baselines", "prompts"),
        engineered=steering_engineered,
        eval_sets=steering_eval_files,
        model=model_input("steering"),
    output:
        directions=f"{STEERING}/repe/directions.safetensors",
        norms=f"{STEERING}/repe/directions.json",
        repe=f"{STEERING}/evals/repe.parquet",
        prompts=f"{STEERING}/evals/prompts.parquet",
    log:
        "logs/steering/{instance}/baselines.log",
    benchmark:
        "benchmarks/results/steering/{instance}/baselines.tsv"
    params:
        model=model_spec("steering"),
        eval_sets=steering_eval_sets,
        eval=steering_eval_params,
        n_questions=setting("steering", "baselines", "repe_n_questions"),
        repe_form=setting("steering", "baselines", "repe_form"),
        repe_pairs=setting("steering", "baselines", "repe_pairs"),
        key=steering_key,
        code=code_hash("steering/baselines"),
    threads: model_threads("steering")
    resources:
        gpu=model_gpus("steering"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering/baselines.py"


rule steering_report:
    input:
        evals=steering_families(
            "evals/weight_{family}.parquet", "diagnostics/{family}_projection.parquet"
        ),
        baselines=[f"{STEERING}/evals/repe.parquet", f"{STEERING}/evals/prompts.parquet"],
        overlaps=steering_families("diagnostics/{family}_overlap.parquet"),
    output:
        summary=f"{STEERING}/report/summary.parquet",
        summary_csv=f"{STEERING}/report/summary.csv",
        json=f"{STEERING}/report/summary.json",
        alpha=report(
            f"{STEERING}/report/alpha_vs_score.png",
            caption="../report/steering_alpha.rst",
            category="Weight steering",
            subcategory="{instance}",
        ),
        alpha_csv=f"{STEERING}/report/alpha_vs_score.csv",
        bars=report(
            f"{STEERING}/report/baselines_vs_weight.png",
            caption="../report/steering_baselines.rst",
            category="Weight steering",
            subcategory="{instance}",
        ),
        bars_csv=f"{STEERING}/report/baselines_vs_weight.csv",
        pmass=report(
            f"{STEERING}/report/pmass.png",
            caption="../report/steering_pmass.rst",
            category="Weight steering",
            subcategory="{instance}",
        ),
        pmass_csv=f"{STEERING}/report/pmass.csv",
        diagnostics=f"{STEERING}/report/diagnostics.csv",
    log:
        "logs/steering/{instance}/report.log",
    params:
        code=code_hash("steering/report"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/steering/report.py"


rule steering_findings:
    input:
        evals=steering_families("evals/weight_{family}.parquet"),
        baselines=[f"{STEERING}/evals/repe.parquet", f"{STEERING}/evals/prompts.parquet"],
    output:
        findings=f"{STEERING}/findings.json",
    log:
        "logs/steering/{instance}/findings.log",
    params:
        families=lambda wildcards: instance("steering", wildcards)["families"],
        findings=setting("steering", "findings"),
        model=model_id("steering"),
        key=steering_key,
        code=code_hash("steering/findings"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/steering/findings.py"


# Seed 004's multi-seed runs: the instances of one train.seed sweep, across seeds.
rule steering_seeds:
    input:
        summaries=lambda wildcards: [
            f"results/steering/{name}/report/summary.parquet"
            for name in steering_seed_groups()[wildcards.group]
        ],
    output:
        csv="results/steering/{group}-seeds/seeds.csv",
        json="results/steering/{group}-seeds/seeds.json",
        png=report(
            "results/steering/{group}-seeds/alpha_vs_score.png",
            caption="../report/steering_seeds.rst",
            category="Weight steering",
            subcategory="{group} (across seeds)",
        ),
        png_csv="results/steering/{group}-seeds/alpha_vs_score.csv",
    log:
        "logs/steering/{group}-seeds/seeds.log",
    params:
        seeds=lambda wildcards: list(steering_seed_groups()[wildcards.group].values()),
        code=code_hash("steering/seeds"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/steering/seeds.py"
