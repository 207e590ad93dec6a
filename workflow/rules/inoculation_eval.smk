# Inoculation, evaluation stages: each run's answers to the eval instructions (rule
# inoculation_eval) and their judged trait scores (inoculation_scores). Plan and targets:
# inoculation.smk.

from interpflow.inoculation.study import eval_files

# The eval instructions and, with an EM judge, the EM questions.
inoc_eval_input = lambda wildcards: eval_files(
    instance("inoculation", wildcards), inoc_data_file(wildcards)
)


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
