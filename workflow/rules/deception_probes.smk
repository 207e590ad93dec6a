# The deception study's probe stages (glue: deception.smk): the logreg / MLP probes on one
# layer with their baselines, the layer sweep, the 4-bit transfer and the probe protocol.

rule deception_probes:
    input:
        # control_proba: probes.control's test_proba.parquet, if set; nla: the verbalizer's
        # labels, if probes.target is verbalizer_label
        unpack(lambda wildcards: deception_control(wildcards) | deception_nla(wildcards)),
        activations=f"{DECEPTION}/activations.parquet",
        labels=f"{DECEPTION}/labels.parquet",
        prompts=f"{DECEPTION}/prompts.parquet",  # the text baselines' input
    output:
        logreg=f"{DECEPTION}/probes/logreg.joblib",
        logreg_tensors=f"{DECEPTION}/probes/logreg.safetensors",
        logreg_meta=f"{DECEPTION}/probes/logreg.json",
        mlp=f"{DECEPTION}/probes/mlp.safetensors",
        mlp_meta=f"{DECEPTION}/probes/mlp.json",
        classes=f"{DECEPTION}/probes/label_classes.txt",
        train=f"{DECEPTION}/probes/train_indices.npy",
        test=f"{DECEPTION}/probes/test_indices.npy",
        test_proba=f"{DECEPTION}/probes/test_proba.parquet",
        metrics=f"{DECEPTION}/probes/metrics.json",
        provenance=f"{DECEPTION}/probes/metrics.json.provenance.json",
        confusion_logreg=report(
            f"{DECEPTION}/probes/confusion_logreg.png",
            caption="../report/confusion.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
        confusion_logreg_csv=f"{DECEPTION}/probes/confusion_logreg.csv",
        confusion_mlp=report(
            f"{DECEPTION}/probes/confusion_mlp.png",
            caption="../report/confusion.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
        confusion_mlp_csv=f"{DECEPTION}/probes/confusion_mlp.csv",
    log:
        "logs/deception/{instance}/probes.log",
    benchmark:
        "benchmarks/results/deception/{instance}/probes.tsv"
    params:
        probes=setting("deception", "probes"),
        code=code_hash("deception/probes"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/deception/probes.py"


rule deception_layer_sweep:
    input:
        unpack(deception_nla),  # nla: the verbalizer's labels, if probes.target is verbalizer_label
        activations=f"{DECEPTION}/activations.parquet",
        labels=f"{DECEPTION}/labels.parquet",
        prompts=f"{DECEPTION}/prompts.parquet",  # the split's near-duplicate families
    output:
        png=report(
            f"{DECEPTION}/layer_sweep.png",
            caption="../report/layer_sweep.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
        csv=f"{DECEPTION}/layer_sweep.csv",
    log:
        "logs/deception/{instance}/layer_sweep.log",
    params:
        probes=setting("deception", "probes"),
        layers=setting("deception", "capture", "layers"),
        code=code_hash("deception/layer_sweep"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/deception/layer_sweep.py"


# Seed 000's 4-bit transfer: the probe trained on full-precision activations, scored on a
# bitsandbytes NF4 copy of the model (both re-read from the stored generations).
rule deception_quant_transfer:
    input:
        unpack(deception_nla),  # nla: the verbalizer's labels, if probes.target is verbalizer_label
        generations=f"{DECEPTION}/generations.parquet",
        activations=f"{DECEPTION}/activations.parquet",
        labels=f"{DECEPTION}/labels.parquet",
        probe=f"{DECEPTION}/probes/logreg.joblib",
        classes=f"{DECEPTION}/probes/label_classes.txt",
        test=f"{DECEPTION}/probes/test_indices.npy",
        model=model_input("deception"),
    output:
        metrics=f"{DECEPTION}/quant_transfer/metrics.json",
        provenance=f"{DECEPTION}/quant_transfer/metrics.json.provenance.json",
        cosine=f"{DECEPTION}/quant_transfer/cosine.csv",
        figure=report(
            f"{DECEPTION}/quant_transfer/transfer.png",
            caption="../report/quant_transfer.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
        activations_full=f"{DECEPTION}/quant_transfer/activations_full.parquet",
        activations_4bit=f"{DECEPTION}/quant_transfer/activations_4bit.parquet",
    log:
        "logs/deception/{instance}/quant_transfer.log",
    benchmark:
        "benchmarks/results/deception/{instance}/quant_transfer.tsv"
    params:
        model=model_spec("deception"),
        probes=setting("deception", "probes"),
        capture=setting("deception", "capture"),
        quant=setting("deception", "quant_transfer"),
        code=code_hash("deception/quant_transfer"),
    threads: model_threads("deception")
    resources:
        gpu=model_gpus("deception"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/deception/quant_transfer.py"


# The probe protocol: the control set generated by the instance's model, the threshold at 1%
# FPR there, probe types, random directions, the transfer matrix and the leakage audit.
rule deception_protocol:
    input:
        unpack(deception_nla),  # nla: the verbalizer's labels, if probes.target is verbalizer_label
        activations=f"{DECEPTION}/activations.parquet",
        labels=f"{DECEPTION}/labels.parquet",
        prompts=f"{DECEPTION}/prompts.parquet",
        train=f"{DECEPTION}/probes/train_indices.npy",
        test=f"{DECEPTION}/probes/test_indices.npy",
        bank=lambda wildcards: existing_file(
            instance("deception", wildcards)["protocol"]["control_bank"],
            f"deception.{wildcards.instance}.protocol.control_bank",
        ),
        model=model_input("deception"),
    output:
        metrics=f"{DECEPTION}/protocol/metrics.json",
        transfer=f"{DECEPTION}/protocol/transfer.csv",
        figure=report(
            f"{DECEPTION}/protocol/recall.png",
            caption="../report/protocol.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
        control=f"{DECEPTION}/protocol/control_activations.parquet",
    log:
        "logs/deception/{instance}/protocol.log",
    benchmark:
        "benchmarks/results/deception/{instance}/protocol.tsv"
    params:
        model=model_spec("deception"),
        model_id=model_id("deception"),
        generation=setting("deception", "generation"),
        capture=setting("deception", "capture"),
        probes=setting("deception", "probes"),
        protocol=setting("deception", "protocol"),
        code=code_hash("deception/protocol"),
    threads: model_threads("deception")
    resources:
        gpu=model_gpus("deception"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/deception/protocol.py"
