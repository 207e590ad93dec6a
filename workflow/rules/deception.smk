# Seed 000, the deception / eval-awareness study: prompt banks -> generations + residual
# capture -> judge labels (+ verbalizer text) -> logreg / MLP probes on one layer, layer sweep.
# Every instance (config key deception.<instance>) lives under results/deception/<instance>/.
# This file holds the study's glue (planning checks, input functions, the target list); each
# stage's rule is in the file named after its group: deception_data.smk (prompts, generate,
# labels, verbalize, agreement), deception_probes.smk (probes, layer sweep, 4-bit transfer,
# protocol), deception_transfer.smk (the out-of-distribution sets) and deception_report.smk
# (findings, the model card's copy).

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
    + (
        ["transfer_train/metrics.json"]
        if inst["transfer"]["enabled"] and inst["transfer"]["train"]["enabled"]
        else []
    )
]
