# Seed 000, the deception / eval-awareness study: prompt banks -> generations + residual
# capture -> judge labels (+ verbalizer text) -> logreg / MLP probes on one layer, layer sweep.
# Every instance (config key deception.<instance>) lives under results/deception/<instance>/.

import re
import shutil

from interpflow.deception.banks import check_banks
from interpflow.planning import check_captured, check_positions_fit
from interpflow.positions import parse_positions

DECEPTION = "results/deception/{instance}"


# Input and params functions and the target list are lambdas: `snakemake --lint` flags a file
# that mixes rules with function definitions.

# Instances that write verbalizer text (labels.verbalizer.enabled).
DECEPTION_VERBALIZED = [
    name
    for name, inst in INSTANCES["deception"].items()
    if inst["labels"]["verbalizer"]["enabled"]
]

# probes.target verbalizer_label: the probes' target is the per-prompt majority of the
# verbalizer texts' labels, so the verbalizer must be on (else planning stops, naming the key).
for _name, _inst in INSTANCES["deception"].items():
    if _inst["probes"]["target"] == "verbalizer_label" and _name not in DECEPTION_VERBALIZED:
        raise ConfigError(
            f"config key deception.{_name}.probes.target: verbalizer_label needs "
            f"deception.{_name}.labels.verbalizer.enabled: true (the verbalizer's labels_nla.parquet)"
        )

# An input function (unpack): the verbalizer's table for an instance whose probes.target is
# verbalizer_label (every stage that reads the probes' labels takes it).
deception_nla = lambda wildcards: {
    "nla": f"results/deception/{name}/labels_nla.parquet"
    for name in [instance_name("deception", wildcards)]
    if INSTANCES["deception"][name]["probes"]["target"] == "verbalizer_label"
}

# (instance, role) -> judge kwargs: the label judge of every instance, the verbalizer's where
# enabled (an unknown judge, a missing local judge model or API key fails at planning).
DECEPTION_JUDGES = {
    (name, "label"): judge(inst["labels"]["judge"], f"deception.{name}.labels.judge")
    for name, inst in INSTANCES["deception"].items()
} | {
    (name, "verbalizer"): judge(
        INSTANCES["deception"][name]["labels"]["verbalizer"]["judge"],
        f"deception.{name}.labels.verbalizer.judge",
    )
    for name in DECEPTION_VERBALIZED
}

# A params function: the judge kwargs of `role` (label, verbalizer) of the job's instance.
deception_judge = lambda role: lambda wildcards: DECEPTION_JUDGES[
    instance_name("deception", wildcards), role
]

# <bank_dir>/<bank>.txt for each of the instance's banks (a missing one fails at planning,
# naming the config key).
deception_banks = lambda wildcards: [
    existing_file(f"{d}/{bank}.txt", f"deception.{wildcards.instance}.{key}")
    for inst in [instance("deception", wildcards)]
    for d in [inst["bank_dir"]]
    for key in ["banks" if Path(d).is_dir() else "bank_dir"]
    for bank in inst["banks"]
]

# Random-init (or any) controls: deception.<name>.probes.control names another instance with
# the same prompts and split; its probes/test_proba.parquet is an input of <name>'s probes, which
# report each probe's margin over the control's. An unknown name, the instance itself or a
# control that has a control of its own fails at planning, naming the key.
DECEPTION_CONTROLS = {
    name: inst["probes"]["control"]
    for name, inst in INSTANCES["deception"].items()
    if inst["probes"]["control"] is not None
}
for _name, _control in DECEPTION_CONTROLS.items():
    _key = f"config key deception.{_name}.probes.control"
    if _control not in INSTANCES["deception"]:
        raise ConfigError(
            f"{_key}: no deception instance {_control!r} in the config (declared: "
            f"{', '.join(sorted(INSTANCES['deception']))})"
        )
    if _control == _name or _control in DECEPTION_CONTROLS:
        raise ConfigError(
            f"{_key}: the control {_control!r} must be another instance whose own "
            f"probes.control is null (it is {INSTANCES['deception'][_control]['probes']['control']!r})"
        )

# What planning can know of each instance, checked here (each error names the dotted key and
# the fix): the layers exist in the model and the probes read what is captured; the response
# positions fit in generation.max_new_tokens; the banks exist, each has prompts, at least two
# classes (duplicates and prompts in two banks are warnings naming file and line).
for _name, _inst in INSTANCES["deception"].items():
    _key = f"deception.{_name}"
    _capture, _probes = _inst["capture"], _inst["probes"]
    check_instance_layers("deception", _name, "capture.layers", _capture["layers"])
    check_captured(
        key=f"{_key}.probes.layer",
        what="layer",
        wanted=[_probes["layer"]],
        captured_key=f"{_key}.capture.layers",
        captured=_capture["layers"],
    )
    for _what in ["capture"] + (["probes"] if _probes["positions"] is not None else []):
        check_positions_fit(
            key=f"{_key}.{_what}.positions",
            positions=_inst[_what]["positions"],
            tokens_key=f"{_key}.generation.max_new_tokens",
            max_new_tokens=_inst["generation"]["max_new_tokens"],
        )
    if _probes["positions"] is not None:
        check_captured(
            key=f"{_key}.probes.positions",
            what="position",
            wanted=[p.name for p in parse_positions(_probes["positions"])],
            captured_key=f"{_key}.capture.positions",
            captured=[p.name for p in parse_positions(_capture["positions"])],
        )
    if not Path(_inst["bank_dir"]).is_dir():
        raise ConfigError(
            f"config key {_key}.bank_dir: folder {_inst['bank_dir']} does not exist (a relative "
            f"bank_dir is read from the working directory, {Path.cwd()}, not from the config "
            f"file's folder)"
        )
    _banks = [
        existing_file(f"{_inst['bank_dir']}/{bank}.txt", f"{_key}.banks") for bank in _inst["banks"]
    ]
    if workflow.is_main_process:  # read once: a job's re-parse was planned already
        for _warning in check_banks(paths=_banks, key=f"{_key}.banks"):
            logger.warning(_warning)

# An input function (unpack): the control's test-row probabilities, for an instance that has one.
deception_control = lambda wildcards: {
    "control_proba": f"results/deception/{control}/probes/test_proba.parquet"
    for control in [DECEPTION_CONTROLS.get(instance_name("deception", wildcards))]
    if control is not None
}

# An input function (unpack): the control's probes/metrics.json (its own AUROC and CI), for an
# instance that has one.
deception_control_metrics = lambda wildcards: {
    "control_metrics": f"results/deception/{control}/probes/metrics.json"
    for control in [DECEPTION_CONTROLS.get(instance_name("deception", wildcards))]
    if control is not None
}

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

# The end products of every deception instance (rule all).
DECEPTION_TARGETS = [
    "findings.json",
    "probes/logreg.joblib",
    "probes/metrics.json",
    "probes/confusion_logreg.png",
    "probes/confusion_mlp.png",
    "layer_sweep.png",
    "labels.summary.json",
]
deception_targets = lambda: [
    f"results/deception/{name}/{target}"
    for name, inst in INSTANCES["deception"].items()
    for target in DECEPTION_TARGETS
    + ["labels.agreement.json"]
    + (
        ["labels_nla.parquet", "labels_nla.category.csv", "labels_nla.category.md"]
        if name in DECEPTION_VERBALIZED
        else []
    )
    + (["quant_transfer/metrics.json"] if inst["quant_transfer"]["enabled"] else [])
    + (["protocol/metrics.json"] if inst["protocol"]["enabled"] else [])
    + (["transfer/metrics.json"] if inst["transfer"]["enabled"] else [])
]


rule deception_prompts:
    input:
        banks=deception_banks,
    output:
        table=f"{DECEPTION}/prompts.parquet",
        summary=f"{DECEPTION}/prompts.summary.json",
    log:
        "logs/deception/{instance}/prompts.log",
    params:
        code=code_hash("deception/prompts"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/deception/prompts.py"


rule deception_generate:
    input:
        prompts=f"{DECEPTION}/prompts.parquet",
        model=model_input("deception"),
    output:
        generations=f"{DECEPTION}/generations.parquet",
        activations=f"{DECEPTION}/activations.parquet",
        provenance=f"{DECEPTION}/activations.parquet.provenance.json",
    log:
        "logs/deception/{instance}/generate.log",
    benchmark:
        "benchmarks/results/deception/{instance}/generate.tsv"
    params:
        model=model_spec("deception"),
        model_id=model_id("deception"),
        generation=setting("deception", "generation"),
        capture=setting("deception", "capture"),
        code=code_hash("deception/generate"),
    threads: model_threads("deception")
    resources:
        gpu=model_gpus("deception"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/deception/generate.py"


rule deception_labels:
    input:
        generations=f"{DECEPTION}/generations.parquet",
    output:
        labels=f"{DECEPTION}/labels.parquet",
        summary=f"{DECEPTION}/labels.summary.json",
    log:
        "logs/deception/{instance}/labels.log",
    benchmark:
        "benchmarks/results/deception/{instance}/labels.tsv"
    params:
        judge=deception_judge("label"),
        classes=setting("deception", "banks"),
        cache=JUDGE_CACHE,
        code=code_hash("deception/labels"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/deception/labels.py"


rule deception_verbalize:
    input:
        activations=f"{DECEPTION}/activations.parquet",
        generations=f"{DECEPTION}/generations.parquet",
        labels=f"{DECEPTION}/labels.parquet",  # the category x judge-label table beside it
    output:
        nla=f"{DECEPTION}/labels_nla.parquet",
        # how the grader files each category's verbalizer texts (seed 000's discussion)
        table_csv=f"{DECEPTION}/labels_nla.category.csv",
        table_md=f"{DECEPTION}/labels_nla.category.md",
    log:
        "logs/deception/{instance}/verbalize.log",
    benchmark:
        "benchmarks/results/deception/{instance}/verbalize.tsv"
    wildcard_constraints:
        # only instances with the verbalizer enabled (no rule makes the file for the others)
        instance="|".join(map(re.escape, DECEPTION_VERBALIZED)) or "(?!)",
    params:
        judge=deception_judge("verbalizer"),
        grader=deception_judge("label"),
        classes=setting("deception", "banks"),
        layer=setting("deception", "probes", "layer"),
        cache=JUDGE_CACHE,
        code=code_hash("deception/verbalize"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/deception/verbalize.py"


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


# What an instance's findings row is (interpflow.findings.KINDS): a control instance's own row
# (another instance's probes.control, or a model declared init: random), or a finding.
deception_finding_kind = lambda wildcards: (
    "control"
    if instance_name("deception", wildcards) in DECEPTION_CONTROLS.values()
    or MODELS[instance("deception", wildcards)["model"]["name"]]["init"] == "random"
    else "finding"
)


# The headline beside its controls (interpflow.findings rows): the logreg probe's AUROC at the
# configured layer with its paired margins over the random-init copy (probes.control), the bag
# of words and the form-only baseline; the layer sweep is quoted as context. No model: local.
rule deception_findings:
    input:
        # control_metrics, if probes.control is set; transfer, if transfer.enabled
        unpack(lambda w: deception_control_metrics(w) | deception_transfer_metrics(w)),
        metrics=f"{DECEPTION}/probes/metrics.json",
        layer_sweep=f"{DECEPTION}/layer_sweep.csv",
    output:
        findings=f"{DECEPTION}/findings.json",
    log:
        "logs/deception/{instance}/findings.log",
    params:
        model=model_id("deception"),
        kind=deception_finding_kind,
        code=code_hash("deception/findings"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/deception/findings.py"


# The model card's one-target command, `snakemake results/probes/logreg.joblib`: the default
# instance's probe, copied (declared only when the config has a `default` deception instance).
if "default" in INSTANCES["deception"]:

    rule deception_card:
        input:
            "results/deception/default/probes/logreg.joblib",
        output:
            "results/probes/logreg.joblib",
        log:
            "logs/deception/default/card.log",
        localrule: True
        run:
            shutil.copyfile(input[0], output[0])


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


# How far to trust the labels: each judge's accuracy on the shipped gold slice, and Cohen's
# kappa between the label judge and labels.agreement.judges on the same generations.
rule deception_agreement:
    input:
        generations=f"{DECEPTION}/generations.parquet",
        gold=lambda wildcards: existing_file(
            instance("deception", wildcards)["labels"]["agreement"]["gold"],
            f"deception.{wildcards.instance}.labels.agreement.gold",
        ),
    output:
        agreement=f"{DECEPTION}/labels.agreement.json",
    log:
        "logs/deception/{instance}/agreement.log",
    benchmark:
        "benchmarks/results/deception/{instance}/agreement.tsv"
    params:
        judges=lambda wildcards: [
            judge(name, f"deception.{wildcards.instance}.labels.agreement.judges")
            for inst in [instance("deception", wildcards)]
            for name in dict.fromkeys(
                [inst["labels"]["judge"], *inst["labels"]["agreement"]["judges"]]
            )
        ],
        classes=setting("deception", "banks"),
        cache=JUDGE_CACHE,
        code=code_hash("deception/agreement"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/deception/agreement.py"


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
