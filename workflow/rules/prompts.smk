rule prompts_deception:
    input:
        banks=expand(
            "{dir}/{bank}.txt",
            dir=config["deception"]["bank_dir"],
            bank=config["deception"]["banks"],
        ),
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
