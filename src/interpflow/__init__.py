"""interpflow: a reproducible pipeline for research on the internals of large language models.

One module per pipeline stage; each is importable without snakemake and takes explicit,
typed arguments. Scripts under ``scripts/`` translate ``snakemake.*`` into those arguments.
"""

__version__ = "0.1.0"

# A snakemake script job hands itself to the fork server when one is named
# (INTERPFLOW_FORKSERVER) before it imports anything heavy; otherwise this does nothing.
import os as _os

if _os.environ.get("INTERPFLOW_FORKSERVER"):
    from interpflow.forkserver import delegate as _delegate

    _delegate()
