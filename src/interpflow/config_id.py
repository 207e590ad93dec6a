"""A readable name of the config files a run is given, for the outputs that span instances.

Rule ``findings`` gathers every instance of the config into one table and two ledgers; those
files live under ``results/findings/<config-id>/``, so that a run of one preset never replaces
another's table. The id is:

- ``default`` with no config file given (the embedded config/config.yaml);
- ``reference`` for the reference run's presets (REFERENCE, the Makefile's ``REFERENCE``);
- the stem of the single config file given (config/studies/tribunal_r1.yaml: ``tribunal_r1``);
- for several files layered, ``layered-<hash>``, a short hash of their paths in order (the
  directory's ``configfiles.json`` names them).

A single file whose stem is ``default``, ``reference`` or starts with ``layered-`` gets the
short hash too, so no preset takes another run's name. A path counts relative to the first
root it lies in (the working directory, where results/ is, then the repository: the
Snakefile's CONFIG_ROOTS), else by its absolute path.

    python -m interpflow.config_id [CONFIGFILE ...]   # prints the id
    python -m interpflow.config_id --dir [CONFIGFILE ...]   # prints results/findings/<id>
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from interpflow.cli import parser as cli_parser

#: the reference run's presets (the Makefile's REFERENCE; a test keeps the two the same)
REFERENCE = (
    "config/studies/deception_smollm2.yaml",
    "config/studies/tribunal_smollm2.yaml",
    "config/studies/inoculation_smollm2.yaml",
    "config/studies/steering_smollm2.yaml",
)
#: the directory of the outputs that span a config's instances
FINDINGS_ROOT = "results/findings"
#: the repository of this checkout (the Snakefile's directory)
REPO = Path(__file__).resolve().parents[2]
RESERVED = ("default", "reference")


def normalized(*, path: str | os.PathLike, roots: Sequence[str | os.PathLike]) -> str:
    """``path`` relative to the first of ``roots`` it lies in (posix), else its absolute path."""
    full = Path(path).resolve()
    for root in roots:
        if full.is_relative_to(Path(root).resolve()):
            return full.relative_to(Path(root).resolve()).as_posix()
    return full.as_posix()


def config_id(
    *, configfiles: Sequence[str | os.PathLike], roots: Sequence[str | os.PathLike]
) -> str:
    """The readable id of ``configfiles`` (as given to ``--configfile``, in order)."""
    paths = [normalized(path=p, roots=roots) for p in configfiles]
    if not paths:
        return "default"
    if sorted(paths) == sorted(REFERENCE):
        return "reference"
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:8]
    if len(paths) == 1:
        stem = Path(paths[0]).stem
        if stem in RESERVED or stem.startswith("layered-"):
            return f"{stem}-{digest}"
        return stem
    return f"layered-{digest}"


def findings_dir(
    *, configfiles: Sequence[str | os.PathLike], roots: Sequence[str | os.PathLike]
) -> str:
    """``results/findings/<config-id>``: where rule findings writes for these config files."""
    return f"{FINDINGS_ROOT}/{config_id(configfiles=configfiles, roots=roots)}"


def write_configfiles(
    *, path: str | os.PathLike, config_id: str, configfiles: Sequence[str]
) -> None:
    """``path`` (JSON): the id and the config files it names, in the order given."""
    record = {"config_id": config_id, "configfiles": list(configfiles) or ["config/config.yaml"]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser(module="interpflow.config_id", doc=__doc__)
    parser.add_argument("configfiles", nargs="*", help="the config files, as for snakemake")
    parser.add_argument("--dir", action="store_true", help="print results/findings/<id>")
    parser.add_argument(
        "--root",
        action="append",
        help="where config paths count from, in order (default: . then the repository)",
    )
    args = parser.parse_args(argv)
    name = findings_dir if args.dir else config_id
    print(name(configfiles=args.configfiles, roots=args.root or [".", REPO]))


if __name__ == "__main__":
    main()
