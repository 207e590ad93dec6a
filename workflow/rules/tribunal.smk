# Seed 002, the tribunal study: chain-of-thought correctness probes across layers.
# problems -> attempts -> traces + activations (stops at the targets) -> labels -> probes.
# Every instance (config key tribunal.<instance>) lives under results/tribunal/<instance>/.

from interpflow.planning import check_positions_fit

TRIBUNAL = "results/tribunal/{instance}"


# Input functions and the target list are lambdas: `snakemake --lint` flags a file that
# mixes rules with function definitions.

# The local problems file: a missing one, or a hub dataset id (jobs never reach the network;
# the error gives the command that fetches it once), fails at planning, naming the config key.
tribunal_problems_input = lambda wildcards: [
    existing_file(source, key)
    if Path(source).exists() or source.endswith((".jsonl", ".json", ".parquet"))
    else (_ for _ in ()).throw(
        ConfigError(hub_source_message(source, problems["hub_config"], problems["split"], key))
    )
    for problems in [instance("tribunal", wildcards)["problems"]]
    for source in [problems["source"]]
    for key in [f"tribunal.{wildcards.instance}.problems.source"]
]

# The capture layers exist in the instance's model: planning stops naming the key and the
# depth (where planning knows it: interpflow.planning.check_layers).
# The aggregations but pre_answer are position specs (interpflow.positions, e.g. response_mean,
# or sequence_mean: prompt + trace, as seed 002 averages): an unknown one fails at planning.
for _name, _inst in INSTANCES["tribunal"].items():
    check_instance_layers("tribunal", _name, "capture.layers", _inst["capture"]["layers"])
    check_positions_fit(
        key=f"tribunal.{_name}.capture.aggregations",
        positions=[a for a in _inst["capture"]["aggregations"] if a != "pre_answer"],
        tokens_key=f"tribunal.{_name}.generation.max_new_tokens",
        max_new_tokens=_inst["generation"]["max_new_tokens"],
    )

# probes.control: a models entry (e.g. a random-init copy) that re-reads the instance's traces.
# Its directory (the one models_random_init / models_packaged builds, else nothing to build),
# its ModelSpec keyword arguments (the instance's dtype / device / template), and the probes'
# extra input when it is set. An undeclared name fails at planning, naming the key.
tribunal_control_name = lambda wildcards: (
    lambda name: name
    if name in MODELS
    else (_ for _ in ()).throw(
        ConfigError(
            f"config key tribunal.{wildcards.instance}.probes.control: model {name!r} is not "
            f"declared under models (declared: {', '.join(sorted(MODELS))})"
        )
    )
)(instance("tribunal", wildcards)["probes"]["control"])
tribunal_control_path = lambda wildcards: declared_model_path(tribunal_control_name(wildcards))
tribunal_control_input = lambda wildcards: [
    path for path in [tribunal_control_path(wildcards)] if path in BUILT_DIRS
]
tribunal_control_spec = lambda wildcards: dict(
    name_or_path=tribunal_control_path(wildcards),
    revision=MODELS[tribunal_control_name(wildcards)]["revision"],
    dtype=instance("tribunal", wildcards)["model"]["dtype"],
    device=instance("tribunal", wildcards)["model"]["device"],
    trust_remote_code=MODELS[tribunal_control_name(wildcards)]["trust_remote_code"],
    chat_template={
        **MODELS[tribunal_control_name(wildcards)]["chat_template"],
        **instance("tribunal", wildcards)["model"]["chat_template"],
    },
)
tribunal_probes_control = lambda wildcards: (
    {"control_activations": f"results/tribunal/{wildcards.instance}/control/activations.parquet"}
    if instance("tribunal", wildcards)["probes"]["control"]
    else {}
)

# Rule tribunal_tokens runs when an aggregation needs the finished answer (pre_answer) or the
# per-token probe is on; the probes then read its activations (and its windows).
tribunal_tokens_needed = lambda wildcards: (
    "pre_answer" in instance("tribunal", wildcards)["capture"]["aggregations"]
    or instance("tribunal", wildcards)["probes"]["per_token"]
)
tribunal_probes_tokens = lambda wildcards: (
    {
        "tokens_activations": f"results/tribunal/{wildcards.instance}/tokens/activations.parquet",
        "spans": f"results/tribunal/{wildcards.instance}/tokens/spans.parquet",
    }
    if tribunal_tokens_needed(wildcards)
    else {}
)

# The end products of every tribunal instance (rule all).
tribunal_targets = lambda: expand(
    f"{TRIBUNAL}/{{target}}",
    instance=list(INSTANCES["tribunal"]),
    target=[
        "labels.summary.json",
        "metrics.json",
        "probe_results.png",
        "implicit_value_directions.json",
        "findings.json",
    ],
)


rule tribunal_prompts:
    input:
        tribunal_problems_input,
    output:
        problems=f"{TRIBUNAL}/problems.parquet",
        prompts=f"{TRIBUNAL}/prompts.parquet",
        provenance=f"{TRIBUNAL}/prompts.parquet.provenance.json",
    log:
        "logs/tribunal/{instance}/prompts.log",
    params:
        problems=setting("tribunal", "problems"),
        instruction=setting("tribunal", "prompt", "instruction"),
        samples_per_problem=setting("tribunal", "generation", "samples_per_problem"),
        max_attempts=setting("tribunal", "stopping", "max_attempts"),
        seed=setting("tribunal", "generation", "seed"),
        code=code_hash("tribunal/prompts"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tribunal/prompts.py"


rule tribunal_generate:
    input:
        prompts=f"{TRIBUNAL}/prompts.parquet",
        model=model_input("tribunal"),
    output:
        generations=f"{TRIBUNAL}/generations.parquet",
        activations=f"{TRIBUNAL}/activations.parquet",
        provenance=f"{TRIBUNAL}/activations.parquet.provenance.json",
    log:
        "logs/tribunal/{instance}/generate.log",
    benchmark:
        "benchmarks/results/tribunal/{instance}/generate.tsv"
    params:
        model=model_spec("tribunal"),
        model_id=model_id("tribunal"),
        generation=setting("tribunal", "generation"),
        system_prompt=setting("tribunal", "prompt", "system_prompt"),
        capture=setting("tribunal", "capture"),
        stopping=setting("tribunal", "stopping"),
        test_size=setting("tribunal", "probes", "test_size"),  # stopping.decide_auroc's targets
        labels=setting("tribunal", "labels"),
        code=code_hash("tribunal/generate"),
    threads: model_threads("tribunal")
    resources:
        gpu=model_gpus("tribunal"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/tribunal/generate.py"


# What generation cannot capture (interpflow.tribunal.tokens): the traces re-read by the same
# model (teacher forcing) for the pre_answer window, which ends before the final answer found
# in the finished text, and, with probes.per_token, every response token's vector.
rule tribunal_tokens:
    input:
        generations=f"{TRIBUNAL}/generations.parquet",
        model=model_input("tribunal"),
    output:
        activations=f"{TRIBUNAL}/tokens/activations.parquet",
        spans=f"{TRIBUNAL}/tokens/spans.parquet",
        provenance=f"{TRIBUNAL}/tokens/activations.parquet.provenance.json",
    log:
        "logs/tribunal/{instance}/tokens.log",
    benchmark:
        "benchmarks/results/tribunal/{instance}/tokens.tsv"
    params:
        model=model_spec("tribunal"),
        model_id=model_id("tribunal"),
        capture=setting("tribunal", "capture"),
        labels=setting("tribunal", "labels"),
        per_token=setting("tribunal", "probes", "per_token"),
        batch_size=setting("tribunal", "generation", "batch_size"),
        code=code_hash("tribunal/tokens"),
    threads: model_threads("tribunal")
    resources:
        gpu=model_gpus("tribunal"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/tribunal/tokens.py"


# The random-init control (probes.control): the same traces, teacher-forced through the control
# model, captured at the same layers x aggregations; the probes fit the same probe on them.
rule tribunal_control:
    input:
        generations=f"{TRIBUNAL}/generations.parquet",
        model=tribunal_control_input,
    output:
        activations=f"{TRIBUNAL}/control/activations.parquet",
        provenance=f"{TRIBUNAL}/control/activations.parquet.provenance.json",
    log:
        "logs/tribunal/{instance}/control.log",
    benchmark:
        "benchmarks/results/tribunal/{instance}/control.tsv"
    params:
        model=tribunal_control_spec,
        model_id=lambda wildcards: model_label(tribunal_control_name(wildcards)),
        capture=setting("tribunal", "capture"),
        labels=setting("tribunal", "labels"),
        batch_size=setting("tribunal", "generation", "batch_size"),
        code=code_hash("tribunal/control"),
    threads: model_threads("tribunal")
    resources:
        gpu=model_gpus("tribunal"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/tribunal/control.py"


rule tribunal_labels:
    input:
        generations=f"{TRIBUNAL}/generations.parquet",
        prompts=f"{TRIBUNAL}/prompts.parquet",
    output:
        labels=f"{TRIBUNAL}/labels.parquet",
        summary=f"{TRIBUNAL}/labels.summary.json",
    log:
        "logs/tribunal/{instance}/labels.log",
    params:
        labels=setting("tribunal", "labels"),
        stopping=setting("tribunal", "stopping"),
        test_size=setting("tribunal", "probes", "test_size"),  # stopping.decide_auroc's targets
        code=code_hash("tribunal/labels"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tribunal/labels.py"


rule tribunal_probes:
    input:
        unpack(tribunal_probes_control),  # control_activations, if probes.control is set
        unpack(tribunal_probes_tokens),  # tokens_activations + spans, if pre_answer / per_token
        activations=f"{TRIBUNAL}/activations.parquet",
        labels=f"{TRIBUNAL}/labels.parquet",
        generations=f"{TRIBUNAL}/generations.parquet",
    output:
        metrics=f"{TRIBUNAL}/metrics.json",
        provenance=f"{TRIBUNAL}/metrics.json.provenance.json",
        png=report(
            f"{TRIBUNAL}/probe_results.png",
            caption="../report/tribunal_probe_results.rst",
            category="Tribunal",
            subcategory="{instance}",
        ),
        table=f"{TRIBUNAL}/probe_results.csv",
        logits=f"{TRIBUNAL}/probe_logits.parquet",
        directions=f"{TRIBUNAL}/implicit_value_directions.safetensors",
        directions_json=f"{TRIBUNAL}/implicit_value_directions.json",
    log:
        "logs/tribunal/{instance}/probes.log",
    benchmark:
        "benchmarks/results/tribunal/{instance}/probes.tsv"
    params:
        layers=setting("tribunal", "capture", "layers"),
        aggregations=setting("tribunal", "capture", "aggregations"),
        probes=setting("tribunal", "probes"),
        model_id=model_id("tribunal"),
        code=code_hash("tribunal/probes"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tribunal/probes.py"


# The headline beside its controls (interpflow.findings rows): the best probe's AUROC with its
# paired margins over the trace-text controls (form, bag of words), and the class balance.
# No model: local.
rule tribunal_findings:
    input:
        metrics=f"{TRIBUNAL}/metrics.json",
        summary=f"{TRIBUNAL}/labels.summary.json",
    output:
        findings=f"{TRIBUNAL}/findings.json",
    log:
        "logs/tribunal/{instance}/findings.log",
    params:
        model=model_id("tribunal"),
        stopping=setting("tribunal", "stopping"),
        test_size=setting("tribunal", "probes", "test_size"),  # stopping.decide_auroc's targets
        code=code_hash("tribunal/findings"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tribunal/findings.py"
