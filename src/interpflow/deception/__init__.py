"""Seed 000, the deception / eval-awareness probe study: prompt banks -> generations with
residual capture (the engine's :func:`interpflow.generate.generate_and_capture`) -> judge
labels (+ optional verbalizer text) -> logreg and MLP probes on one layer, and a layer sweep.

One module per stage (rule ``deception_<stage>``, ``scripts/deception/<stage>.py``):
:mod:`~interpflow.deception.prompts`, :mod:`~interpflow.deception.generate` (the config
dataclasses of the engine call), :mod:`~interpflow.deception.labels`,
:mod:`~interpflow.deception.verbalize`, :mod:`~interpflow.deception.probes`,
:mod:`~interpflow.deception.layer_sweep`; the ``probes`` block's dataclasses, shared by the
last two, in :mod:`~interpflow.deception.common`. Config dataclass defaults equal
``workflow/schemas/deception.schema.yaml``.

Importing this package imports nothing else: a stage's code hash covers its own modules.
"""
