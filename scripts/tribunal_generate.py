"""Rule generate_tribunal: sample chains of thought + capture, until the targets are reached."""

from interpflow.artifacts import log_to
from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig
from interpflow.models import ModelSpec
from interpflow.tribunal import StoppingRule, collect_traces


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    gen, cap, stop = smk.params.generation, smk.params.capture, smk.params.stopping
    summary = collect_traces(
        smk.input.prompts,
        smk.output.generations,
        smk.output.activations,
        smk.output.provenance,
        model=ModelSpec(**smk.params.model),
        sampling=SamplingConfig(
            max_new_tokens=gen["max_new_tokens"],
            temperature=gen["temperature"],
            top_p=gen["top_p"],
            do_sample=True,
            seed=gen["seed"],
            system_prompt=smk.params.system_prompt,
        ),
        capture=CaptureConfig(
            layers=tuple(cap["layers"]),
            positions=tuple(cap["aggregations"]),
            store_dtype=cap["store_dtype"],
        ),
        run=RunConfig(batch_size=gen["batch_size"], shard_size=gen["shard_size"]),
        stopping=StoppingRule(
            target_correct=stop["target_correct"],
            target_incorrect=stop["target_incorrect"],
            **smk.params.labels,
        ),
        model_id=smk.params.model_id,
    )
    print({k: summary[k] for k in ("n_prompts", "n_shards_used", "n_shards", "stopped_early")})


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
