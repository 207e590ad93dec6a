# Judges by name (config key judges): the keyword arguments a stage passes to
# interpflow.judges, checked at planning; the caches of judge and embedding calls.

from interpflow.judges import JudgeConfig, require_api_key
from interpflow.models import check_model_path

JUDGE_CACHE = "results/cache/judges.sqlite"
EMBED_CACHE = "results/cache/embeddings.sqlite"


def judge(name, key):
    """Keyword arguments of interpflow.judges.JudgeConfig for the judge `name` (`name` too,
    for error messages).

    Fails at DAG planning (not hours into a GPU job) when the judge is unknown, or its local
    model directory (hf) does not exist. A missing API key fails a real run at planning too,
    before any GPU job; a dry run (`snakemake -n`, e.g. on a login node) only warns, naming
    the variable. The key itself never enters params or logs.
    """
    if name not in config["judges"]:
        raise ConfigError(
            f"config key {key}: judge {name!r} is not defined under 'judges' "
            f"(defined: {', '.join(sorted(config['judges']))})"
        )
    cfg = JudgeConfig(**config["judges"][name])
    try:
        require_api_key(cfg)
    except ValueError as e:
        if not workflow.output_settings.dryrun:
            raise
        logger.warning(f"config key {key}: {e} (a dry run plans anyway; a real run stops here)")
    if cfg.backend == "hf" and cfg.model not in BUILT_DIRS:  # may not be built yet
        check_model_path(cfg.model, f"judges.{name}.model")
    return dict(config["judges"][name], name=name)
