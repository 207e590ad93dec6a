"""interpflow: a reproducible pipeline for research on the internals of large language models.

One module per pipeline stage; each is importable without snakemake and takes explicit,
typed arguments. Scripts under ``scripts/`` translate ``snakemake.*`` into those arguments.
"""

__version__ = "0.1.0"
