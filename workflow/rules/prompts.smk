rule prompts_deception:
    input:
        banks=deception_banks,
    output:
        table="results/prompts/deception.parquet",
        summary="results/prompts/deception.summary.json",
    log:
        "logs/prompts/deception.log",
    params:
        code=code_hash("prompts"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/prompts.py"
