"""Rule steering_adapters: theta+ and theta- of one family (same init), then dW and its norms."""

from interpflow.adapters import AdapterConfig, TrainConfig
from interpflow.artifacts import log_to
from interpflow.models import ModelSpec
from interpflow.steering import train_pair


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    adapter = dict(smk.params.adapter)
    adapter["target_modules"] = tuple(adapter["target_modules"])
    if adapter["layer_slice"] is not None:
        adapter["layer_slice"] = tuple(adapter["layer_slice"])
    train = dict(smk.params.train)
    train["save_steps"] = tuple(train["save_steps"])
    summary = train_pair(
        ModelSpec(**smk.params.model),
        smk.input.pos,
        smk.input.neg,
        smk.output.pos,
        smk.output.neg,
        smk.output.dw,
        smk.output.norms,
        AdapterConfig(**adapter),
        TrainConfig(**train),
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
