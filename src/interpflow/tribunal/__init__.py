"""The tribunal study (seed 002): is there an "implicit value" direction in a reasoning model?

Chains of thought are sampled for grade-school maths problems, labelled correct / incorrect /
unparseable by parsing their final answer, and a linear probe per layer × aggregation asks
whether the residual stream separates correct from incorrect traces. One module per stage
(rule ``tribunal_<stage>``, script ``scripts/tribunal/<stage>.py``), read in order:

1. :mod:`.prompts` — GSM8K-format problems (``question``; ``answer`` ending in
   ``#### <number>``) from a local JSONL / JSON / parquet file or a hub dataset id
   (``openai/gsm8k``, through the optional ``datasets`` package), and the attempt table:
   problems × ``samples_per_problem`` in attempt order, cut at ``max_attempts``.
2. :mod:`.generate` — generation + capture through
   :func:`interpflow.generate.generate_and_capture` with a stopping rule (targets of correct
   and incorrect traces reached) checked after each resumable shard.
   :mod:`.tokens` (rule ``tribunal_tokens``, only with the ``pre_answer`` aggregation or
   ``probes.per_token``) — the traces re-read by the same model for what needs the finished
   text: the mean before the final answer, and every response token's vector.
3. :mod:`.labels` — parsed answer (:mod:`.answers`) vs gold: ``correct``, ``incorrect`` or
   ``unparseable`` (its own label, counted, never silently dropped); with
   ``stopping.cap_classes`` each probe class capped at its target in attempt order.
4. :mod:`.probes` — one logistic-regression probe per layer × aggregation on one split grouped
   by *problem*; accuracy / AUROC with 95% CIs against the majority baseline; the
   implicit-value directions; the figure ``probe_results.png`` and its table; beside every
   probe, the controls that never see the model's activations (:mod:`.baselines`: the
   trace's form, its words) and, with ``probes.control``, the same probe on a random-init
   copy's re-reading of the same traces (:mod:`.control`, rule ``tribunal_control``), each
   with the probe's paired margin.
   With ``probes.per_token``, a per-token probe per layer (:mod:`.per_token`). The figure:
   :mod:`.probe_figure`.
5. :mod:`.findings` — the headline (best probe AUROC beside its controls) and the class
   balance, as ``findings.json`` rows.

:mod:`.arithmetic` generates the easy problems shipped for small models
(``resources/tribunal/arithmetic.jsonl``).

:mod:`.common` holds the config dataclasses (one per block of an instance's config, defaults
equal to ``workflow/schemas/tribunal.schema.yaml``) and the label names.

Chain of thought = the whole response. With a reasoning model the chat template usually
opens ``<think>`` in the prompt, so the response is ``…</think> final answer``; the
``response_mean`` aggregation averages every response token (the thought and the short
answer after it) and ``last_response`` is the last token before EOS. The final answer is
parsed from the text after the last ``</think>`` when the response has one.

Labels always come from the parser; there is no option to mark traces correct by fiat. On a
model that never answers (the random stub) a class is empty, so the probe stage does not
crash and does not invent a score: it writes every declared file with ``status: "skipped"``,
the reason and the class counts. The fitting code paths are exercised end to end by feeding
hand-made traces with both classes (``tests/tribunal/test_workflow.py``).

Importing this package imports nothing else: a stage's code hash covers its own modules.
"""
