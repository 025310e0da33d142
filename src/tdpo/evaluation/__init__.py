"""Evaluation of aligned policies.

* :mod:`tdpo.evaluation.preference_eval`: reward accuracy (DPO-style and TDPO-style), margins, sequential KL
  and log-probs on a preference test set; :mod:`tdpo.evaluation.policy_comparison` several checkpoints
  side by side (``tdpo eval``);
* :mod:`tdpo.evaluation.diversity`: the mean per-token entropy of a policy over its own samples;
* :mod:`tdpo.evaluation.ancestral`: the cached ancestral sampler (inverse-transform sampling from the
  chunked head, the policy's states kept), which also gives each sample's reverse and forward KL;
* :mod:`tdpo.evaluation.generation`: answers of a Hugging Face model to question files;
* :mod:`tdpo.evaluation.questions`: MT-bench question and answer files, plain prompt lists;
* :mod:`tdpo.evaluation.judges`: pairwise judges (``tdpo judge``), gathered from
  :mod:`~tdpo.evaluation.judgment` (verdicts, parsing, the both-orders rule),
  :mod:`~tdpo.evaluation.chat_judge` (an OpenAI-compatible chat-completions model, through
  :mod:`~tdpo.evaluation.judge_client` on the ``openai`` client) and :mod:`~tdpo.evaluation.reward_judge`
  (a reward model); :mod:`tdpo.evaluation.cache` is their judgment cache, :mod:`tdpo.evaluation.winrate`
  the win/tie/loss tables and :mod:`tdpo.evaluation.intervals` their confidence intervals.

Submodules are imported on demand; this package itself loads nothing heavy.
"""
