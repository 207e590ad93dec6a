"""Inoculation prompting (seed 003): data, training conditions, judged evals, suppression, figures.

Fine-tune on data that shows two traits (e.g. Playful + French); a prefix naming one trait
during training ("inoculation") keeps the trait from leaking into default behaviour. One
module per stage (rule ``inoculation_<stage>``, script ``scripts/inoculation/<stage>.py``):
:mod:`.data`, :mod:`.rephrasings`, :mod:`.text_embeddings`, :mod:`.logprobs`,
:mod:`.heuristics` (with :mod:`.gradients` and :mod:`.embedding_stats`), :mod:`.sft`,
:mod:`.eval`, :mod:`.scores`, :mod:`.report` (with :mod:`.correlations`); training is the
shared trainer :func:`interpflow.adapters.train_adapter`, called by its script. :mod:`.study`
(study files, run names, what an instance runs; read at planning) and :mod:`.common`
(conditions, readers, sampling) are shared by the stages.

Tables (under ``results/inoculation/<instance>/``)
--------------------------------------------------
data (``data/<dataset>.parquet``): ``example_id, instruction, completion, source`` — the SFT
set (``train``), trait-only sets (``trait_<T>``) or the neutral controls (``neutral``).

rephrasings (``rephrasings.parquet``): ``prompt_key, index, text`` (N per inoculation prompt).

logprobs (``logprobs/{train,neutral,traits}[.tokens].parquet``, ``selfperp.parquet``): see
:mod:`.logprobs`; heuristics (``heuristics/``): see :mod:`.heuristics`.

SFT set of one run (``sft/<run>.parquet``): ``example_id, system, user, assistant, prefix``.

eval generations of one run (``evals/<run>.parquet``): ``run, step, condition
(default|training), eval_set (trait|heldout|em|id), item_id, instruction, system, user, completion``.

scores (``scores/scores.parquet``, long): the eval keys + ``metric`` (a trait name, ``coherence`` or ``alignment``),
``score`` (0-100, NaN when the judge gave no usable digit). The summary, suppression and
learning tables leave out the held-out set of another kind (eval set ``heldout``), which has its
own (``scores/heldout_{summary,suppression,learning}.parquet``).

This package imports nothing itself: :mod:`.study` is imported when the Snakefile is parsed.
"""
