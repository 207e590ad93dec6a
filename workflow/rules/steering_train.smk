# Weight steering, training stage (rule steering_adapters): theta+ / theta- adapters per family
# and dW = theta+ - theta-. The study's glue is in steering.smk.

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
