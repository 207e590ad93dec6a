# Seed 004, weight steering: persona data -> theta+/theta- adapters per family -> dW ->
# alpha-sweep evals + subspace diagnostics; RepE and prompt baselines; report figures.
# Every instance (config key steering.<instance>) lives under results/steering/<instance>/.
#
# This file: the study's paths, the input functions stages share, the target list. Each stage's
# rule is in the file named after its group: steering_data.smk (data), steering_train.smk
# (adapters, dW), steering_eval.smk (eval, baselines), steering_report.smk (report, findings,
# seeds).

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
