# Models that a rule builds (declared under `models` with that source): the stub, offline.


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
