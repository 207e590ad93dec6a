# Inoculation, experiment 18 (emergent misalignment): rules inoculation_em_*. Plan and
# targets: inoculation.smk.

from interpflow.inoculation.study import em_eval_files

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
