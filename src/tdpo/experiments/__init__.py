"""Experiments built on tdpo's public API, kept apart from the library: the library never imports them,
and they import only the names the library's packages export (both checked by import-linter's contracts
in ``pyproject.toml``).

* :mod:`tdpo.experiments.imdb`: the papers' IMDb controlled sentiment generation (``tdpo demo``,
  ``tdpo imdb``).
"""
