"""Rule findings: every study instance's findings.json of this config in one table
(results/findings/<config-id>/findings.md), and the cost ledgers of the run so far: rules
(ledger.csv) and judges (judge_ledger.csv) beside it, from interpflow.ledger; configfiles.json
names the config files the id stands for (interpflow.config_id)."""

from interpflow.artifacts import log_to
from interpflow.config import STUDIES
from interpflow.config_id import write_configfiles
from interpflow.findings import gather, summary_text
from interpflow.ledger import gpu_rules, judge_ledger, ledger, only_instances, read_benchmarks
from interpflow.sizing import instance_facts


def main(smk):
    write_configfiles(
        path=smk.output.configfiles,
        config_id=smk.params.config_id,
        configfiles=list(smk.params.configfiles),
    )
    found = gather(
        list(smk.input.findings), smk.output.json, smk.output.md, out_html=smk.output.html
    )
    print(summary_text(found))
    # this config's instances only (and the atlas of their models), not every file on disk
    instances = {study: smk.config[study] for study in STUDIES}
    keys = set(instance_facts(instances=instances, models=smk.config["models"]))
    per_rule, per_instance = ledger(only_instances(read_benchmarks(), keys=keys), gpu=gpu_rules())
    per_rule.write_csv(smk.output.ledger)
    print(per_instance)
    judges = judge_ledger()
    judges.write_csv(smk.output.judges)
    print(judges)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821 (injected by snakemake)
        main(snakemake)  # noqa: F821
