"""Hub datasets, fetched once where the network is: jobs never reach the network.

A preset that studies a hub dataset (GSM8K for the tribunal, daily dilemmas for steering)
names a local file; this command writes that file from the hub's parquet shards, on a login
node or laptop with the network, before the run::

    python -m interpflow.hubdata openai/gsm8k --config main --split test \\
        --out data/tribunal/gsm8k_test.jsonl

It uses ``huggingface_hub`` (installed with transformers), not ``datasets``: it lists the
dataset repository's files, takes the parquet shards of the config and split (the layouts the
hub uses: ``<config>/<split>-*.parquet``, ``data/<split>-*.parquet``, ``<split>-*.parquet``, or
the hub's parquet conversion branch ``refs/convert/parquet``: ``<config>/<split>/*.parquet``),
and writes their rows as JSON lines, in shard order, with a provenance sidecar.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from interpflow.cli import parser as cli_parser

#: The hub's automatic parquet conversion of every dataset.
CONVERT_REVISION = "refs/convert/parquet"


def hub_source_message(source: str, hub_config: str | None, split: str, key: str) -> str:
    """The error for a problems source that is a hub dataset id: jobs never reach the network;
    the command that fetches it once, and the key to point at the file it writes."""
    out = f"data/tribunal/{source.replace('/', '_')}_{split}.jsonl"
    config = f" --config {hub_config}" if hub_config else ""
    return (
        f"config key {key}: {source!r} is a hub dataset, and jobs never reach the network: fetch "
        f"it once where the network is (python -m interpflow.hubdata {source}{config} --split "
        f"{split} --out {out}) and set {key} to {out}"
    )


def parquet_shards(files: list[str], config: str | None, split: str) -> list[str]:
    """The parquet files of ``config``/``split`` among a dataset repository's ``files``, in
    shard order; the first layout that matches wins (see the module docstring)."""
    prefixes = [f"{config}/{split}-", f"{config}/{split}/"] if config else []
    prefixes += [f"data/{split}-", f"{split}-", f"{split}/"]
    for prefix in prefixes:
        shards = sorted(f for f in files if f.startswith(prefix) and f.endswith(".parquet"))
        if shards:
            return shards
    return []


def write_jsonl(shards: list[Path], out: Path) -> int:
    """Write the rows of parquet ``shards`` to ``out`` as JSON lines; returns the row count."""
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for shard in shards:
            for row in pq.read_table(shard).to_pylist():
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                n += 1
    tmp.replace(out)
    return n


def fetch(
    repo_id: str, *, config: str | None, split: str, out: Path, revision: str | None = None
) -> dict:
    """Download ``repo_id``'s ``config``/``split`` from the hub into ``out`` (JSON lines) and
    ``out``.provenance.json; returns the provenance."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi()
    for rev in [revision, CONVERT_REVISION] if revision is None else [revision]:
        files = api.list_repo_files(repo_id, repo_type="dataset", revision=rev)
        shards = parquet_shards(files, config, split)
        if shards:
            break
    else:
        raise ValueError(
            f"{repo_id}: no parquet files for config {config!r}, split {split!r} "
            f"(looked in the default branch and {CONVERT_REVISION})"
        )
    local = [Path(hf_hub_download(repo_id, f, repo_type="dataset", revision=rev)) for f in shards]
    n = write_jsonl(local, out)
    provenance = {
        "repo_id": repo_id,
        "config": config,
        "split": split,
        "revision": rev,
        "files": shards,
        "rows": n,
    }
    Path(f"{out}.provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    """Fetch a hub dataset's split once, where the network is, as a local JSONL file that a
    preset names (jobs never reach the network).

        python -m interpflow.hubdata REPO_ID [--config C] [--split S] --out FILE
    """
    parser = cli_parser(module="interpflow.hubdata", doc=main.__doc__)
    parser.add_argument("repo_id", help="dataset id on the hub, e.g. openai/gsm8k")
    parser.add_argument("--config", default=None, help="dataset config (subset), e.g. main")
    parser.add_argument("--split", default="test", help="split (default: test)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit")
    parser.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    args = parser.parse_args(argv)
    provenance = fetch(
        args.repo_id, config=args.config, split=args.split, out=args.out, revision=args.revision
    )
    print(
        f"{args.out}: {provenance['rows']} rows from {args.repo_id} ({', '.join(provenance['files'])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
