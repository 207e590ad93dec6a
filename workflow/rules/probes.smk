PROBES = "results/probes"


rule probes_deception:
    input:
        activations="results/activations/deception.parquet",
        labels="results/labels/deception.parquet",
    output:
        logreg=f"{PROBES}/logreg.joblib",
        mlp=f"{PROBES}/mlp.safetensors",
        classes=f"{PROBES}/label_classes.txt",
        train=f"{PROBES}/train_indices.npy",
        test=f"{PROBES}/test_indices.npy",
        metrics=f"{PROBES}/metrics.json",
        confusion_logreg=report(
            f"{PROBES}/confusion_logreg.png",
            caption="../report/confusion.rst",
            category="Deception probe",
        ),
        confusion_mlp=report(
            f"{PROBES}/confusion_mlp.png",
            caption="../report/confusion.rst",
            category="Deception probe",
        ),
    log:
        "logs/probes/deception.log",
    benchmark:
        "benchmarks/results/probes_deception.tsv"
    params:
        probes=config["deception"]["probes"],
        code=code_hash("probes", "figures"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/train_probes.py"


rule layer_sweep_deception:
    input:
        activations="results/activations/deception.parquet",
        labels="results/labels/deception.parquet",
    output:
        png=report(
            f"{PROBES}/layer_sweep.png",
            caption="../report/layer_sweep.rst",
            category="Deception probe",
        ),
        csv=f"{PROBES}/layer_sweep.csv",
    log:
        "logs/probes/deception_layer_sweep.log",
    params:
        probes=config["deception"]["probes"],
        layers=config["deception"]["capture"]["layers"],
        code=code_hash("probes", "figures"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/layer_sweep.py"
