rule stub_model:
    input:
        corpus="resources/stub/corpus.txt",
    output:
        directory("results/models/stub"),
    log:
        "logs/stub_model.log",
    params:
        stub=config["stub"],
        code=code_hash("stub"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/build_stub.py"
