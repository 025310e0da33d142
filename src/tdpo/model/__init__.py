"""A Hugging Face causal LM as the token statistics see it: the model-facing side of :mod:`tdpo.token_stats`.

Modules: ``heads`` (a model's output head, refusing heads the chunked path cannot reproduce), ``body``
(final hidden states, full logits, the one "can the chunked path serve this model" decision
:func:`~tdpo.model.body.chunked_parts`, whether packed rows stay apart), ``stats``
(:class:`~tdpo.model.stats.TokenStatsModel`, the causal LM whose forward returns token statistics),
``passes`` (:class:`~tdpo.model.passes.PolicyAndReference`: the reference pass, then the policy pass) and
``packing`` (padding-free rows). The pure math they call is :mod:`tdpo.token_stats`; loading models is
:mod:`tdpo.models`.
"""
