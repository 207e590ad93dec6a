# The deception study's out-of-distribution stage (glue: deception.smk): the evaluation sets
# and the ordinary control set captured through the instance's model, and the transfer matrix.

import re

# Transfer (rule deception_transfer): each instance's evaluation sets, checked at planning
# like the banks (each set folder holds one <class>.txt per bank class; the control bank
# exists); an error names the key. The sets' and the control's prompts are captured by rule
# deception_transfer_capture (one job: the sets and the control set in one prompt table).
TRANSFER_RESERVED = {"control", "in_distribution"}
for _name, _inst in INSTANCES["deception"].items():
    _tr = _inst["transfer"]
    if not _tr["enabled"]:
        continue
    _key = f"deception.{_name}.transfer"
    for _set, _dir in _tr["sets"].items():
        if _set in TRANSFER_RESERVED or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", _set):
            raise ConfigError(
                f"config key {_key}.sets.{_set}: a set name is letters, digits, '_' and '-' "
                f"and not one of {sorted(TRANSFER_RESERVED)}"
            )
        if not Path(_dir).is_dir():
            raise ConfigError(f"config key {_key}.sets.{_set}: folder {_dir} does not exist")
        _files = [f"{_dir}/{c}.txt" for c in _inst["banks"]]
        _missing = [f for f in _files if not Path(f).is_file()]
        if _missing:
            raise ConfigError(
                f"config key {_key}.sets.{_set}: file {_missing[0]} does not exist (an "
                f"evaluation set holds one <class>.txt per class of deception.{_name}.banks: "
                f"give sets of your own, or {_key}.enabled: false)"
            )
        if workflow.is_main_process:
            for _warning in check_banks(paths=_files, key=f"{_key}.sets.{_set}"):
                logger.warning(_warning)
    existing_file(_tr["control_bank"], f"{_key}.control_bank")
    if _tr["positive"] not in _inst["banks"]:
        raise ConfigError(
            f"config key {_key}.positive: {_tr['positive']!r} is not one of deception."
            f"{_name}.banks {_inst['banks']}"
        )
    _train = _tr.get("train", {})
    _reference = _train.get("reference", "bank")
    if _train.get("enabled", True) and _reference not in [None, *_train.get("variants", {})]:
        raise ConfigError(
            f"config key {_key}.train.reference: {_reference!r} is not one of "
            f"{_key}.train.variants {sorted(_train.get('variants', {}))} (or null)"
        )

# The files the transfer capture reads: every evaluation set's <class>.txt files and the
# control bank.
deception_transfer_banks = lambda wildcards: [
    path
    for inst in [instance("deception", wildcards)]
    for path in [
        *(f"{d}/{c}.txt" for d in inst["transfer"]["sets"].values() for c in inst["banks"]),
        inst["transfer"]["control_bank"],
    ]
]

# An input function (unpack): transfer/metrics.json, for an instance with transfer enabled.
deception_transfer_metrics = lambda wildcards: {
    "transfer": f"results/deception/{wildcards.instance}/transfer/metrics.json"
    for inst in [instance("deception", wildcards)]
    if inst["transfer"]["enabled"]
}


# Transfer out of distribution: the prompts of every evaluation set (transfer.sets) and of
# the ordinary control set (transfer.control_bank), one table, through the instance's own
# model, sampling and capture settings (the generate stage's engine), in one job.
rule deception_transfer_capture:
    input:
        banks=deception_transfer_banks,
        model=model_input("deception"),
    output:
        prompts=f"{DECEPTION}/transfer/prompts.parquet",
        generations=f"{DECEPTION}/transfer/generations.parquet",
        activations=f"{DECEPTION}/transfer/activations.parquet",
        provenance=f"{DECEPTION}/transfer/activations.parquet.provenance.json",
    log:
        "logs/deception/{instance}/transfer_capture.log",
    benchmark:
        "benchmarks/results/deception/{instance}/transfer_capture.tsv"
    params:
        model=model_spec("deception"),
        model_id=model_id("deception"),
        generation=setting("deception", "generation"),
        capture=setting("deception", "capture"),
        banks=setting("deception", "banks"),
        transfer=setting("deception", "transfer"),
        code=code_hash("deception/transfer_capture"),
    threads: model_threads("deception")
    resources:
        gpu=model_gpus("deception"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/deception/transfer_capture.py"


# The probe trained once on the bank (probes/logreg.joblib) and the text baselines trained on
# the same bank prompts, read on the bank's held-out prompts and on every evaluation set: the
# transfer matrix (macro AUROC, recall at transfer.fpr on the control set) and the probe's
# paired margins (interpflow.deception.transfer). No model: local.
rule deception_transfer:
    input:
        unpack(deception_nla),  # nla: the verbalizer's labels, if probes.target is verbalizer_label
        captured=f"{DECEPTION}/transfer/activations.parquet",
        captured_prompts=f"{DECEPTION}/transfer/prompts.parquet",
        activations=f"{DECEPTION}/activations.parquet",
        labels=f"{DECEPTION}/labels.parquet",
        prompts=f"{DECEPTION}/prompts.parquet",
        train=f"{DECEPTION}/probes/train_indices.npy",
        test=f"{DECEPTION}/probes/test_indices.npy",
        probe=f"{DECEPTION}/probes/logreg.joblib",
        classes=f"{DECEPTION}/probes/label_classes.txt",
    output:
        metrics=f"{DECEPTION}/transfer/metrics.json",
        matrix=report(
            f"{DECEPTION}/transfer/matrix.csv",
            caption="../report/transfer.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
        figure=report(
            f"{DECEPTION}/transfer/matrix.png",
            caption="../report/transfer.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
    log:
        "logs/deception/{instance}/transfer.log",
    benchmark:
        "benchmarks/results/deception/{instance}/transfer.tsv"
    params:
        probes=setting("deception", "probes"),
        transfer=setting("deception", "transfer"),
        code=code_hash("deception/transfer"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/deception/transfer.py"


# Train for transfer, measured: logistic probes trained by each variant of
# transfer.train.variants (pooled leave-one-set-out, layers concatenated, response positions)
# and the text baselines trained on the same prompts, read only on evaluation sets they were
# not trained on (interpflow.deception.transfer_train). No model: local.
rule deception_transfer_train:
    input:
        unpack(deception_nla),  # nla: the verbalizer's labels, if probes.target is verbalizer_label
        captured=f"{DECEPTION}/transfer/activations.parquet",
        captured_prompts=f"{DECEPTION}/transfer/prompts.parquet",
        activations=f"{DECEPTION}/activations.parquet",
        labels=f"{DECEPTION}/labels.parquet",
        prompts=f"{DECEPTION}/prompts.parquet",
        train=f"{DECEPTION}/probes/train_indices.npy",
        test=f"{DECEPTION}/probes/test_indices.npy",
        classes=f"{DECEPTION}/probes/label_classes.txt",
    output:
        metrics=f"{DECEPTION}/transfer_train/metrics.json",
        table=report(
            f"{DECEPTION}/transfer_train/variants.csv",
            caption="../report/transfer_train.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
        figure=report(
            f"{DECEPTION}/transfer_train/variants.png",
            caption="../report/transfer_train.rst",
            category="Deception probe",
            subcategory="{instance}",
        ),
    log:
        "logs/deception/{instance}/transfer_train.log",
    benchmark:
        "benchmarks/results/deception/{instance}/transfer_train.tsv"
    params:
        probes=setting("deception", "probes"),
        capture=setting("deception", "capture"),
        transfer=setting("deception", "transfer"),
        code=code_hash("deception/transfer_train"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/deception/transfer_train.py"
