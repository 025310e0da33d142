"""Bridges to other training libraries. Each submodule needs its library's optional extra:

* :mod:`tdpo.integrations.trl`: ``TDPOConfig`` and ``TDPOTrainer`` for TRL (``pip install 'tdpo[trl]'``).
"""
