"""Evaluation of aligned policies.

* :mod:`tdpo.evaluation.preference_eval`: reward accuracy (DPO-style and TDPO-style), margins, sequential KL
  and log-probs on a preference test set, several checkpoints side by side (``tdpo eval``);
* :mod:`tdpo.evaluation.diversity`: the mean per-token entropy of a policy over its own samples;
* :mod:`tdpo.evaluation.generation`: answers of a Hugging Face model to question files;
* :mod:`tdpo.evaluation.questions`: MT-bench question and answer files, plain prompt lists;
* :mod:`tdpo.evaluation.judges`: pairwise judges (an OpenAI-compatible chat-completions model, or a reward
  model), :mod:`tdpo.evaluation.cache` their judgment cache, and :mod:`tdpo.evaluation.winrate` the
  win/tie/loss tables with confidence intervals (``tdpo judge``).

Submodules are imported on demand; this package itself loads nothing heavy.
"""
