"""Weight steering (seed 004; Fierro & Roger 2025): persona adapters, dW = θ⁺ − θ⁻, α-sweeps.

One module per stage (rule ``steering_<stage>``, script ``scripts/steering/<stage>.py``):

- :mod:`.data` — the base model answers every question of a pool under each positive and each
  negative persona system prompt; two SFT tables (``system`` null, ``user``, ``assistant`` +
  provenance columns) for :func:`interpflow.adapters.train_adapter`. The persona is *not* in
  the training rows: the adapter has to absorb it.
- :mod:`.adapters` — θ⁺ and θ⁻ of one adapter family (same seed, so the same init), then dW =
  merged⁺ − merged⁻ for every adapted module (safetensors, contiguous fp32) + a JSON of
  per-module Frobenius norms.
- :mod:`.eval` — base + α·dW applied in place on a fresh base at each α, scored on the eval
  sets; subspace diagnostics: overlap of dW with the top-k singular subspaces of the
  pretrained weights and with an activation-PCA subspace, and the projection / complement
  test (steering with the part of the residual-writing dW inside the PCA subspace and with
  the rest).
- :mod:`.baselines` — RepE mean-difference directions of last-token hidden states (every
  decoder block's output) under the positive vs negative personas, and repeng's PCA reader;
  steering adds ``α`` times the unit direction to every block's output (``repe_form: repeng``,
  repeng's ControlVector) or ``α·(d_l − d_{l−1})`` to block ``l``'s (``cumulative``: block
  ``l``'s output moves by ``α·d_l``). And the base model under system prompts (none, simple
  honest, engineered honest / dishonest).
- :mod:`.report` — deltas vs α = 0 with 95% CIs, figures with their tables.

:mod:`.common` holds what several stages share: the resources (personas, question pool, eval
sets), the Yes/No scorer, :class:`~.common.WeightSteerer` and the eval-row schema
:data:`~.common.EVAL_SCHEMA`: ``method`` (weight | repe | prompt | projection), ``variant``
(family / prompt name / projection part), ``alpha``, ``eval_set`` (dilemmas | id), ``row_id``,
``label`` (+1 when "Yes" is the honest answer, −1 when "No" is), ``logp_yes``, ``logp_no``,
``logratio`` = log p(Yes) − log p(No), ``logratio_signed`` = logratio · label (larger = more
honest), ``pmass`` = p(Yes) + p(No).
"""
