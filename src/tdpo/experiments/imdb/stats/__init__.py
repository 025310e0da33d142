"""The statistics of the IMDb experiment's comparisons: :mod:`~.matched_kl` (reward at matched reverse KL,
bootstrap), :mod:`~.primary_contrast` (a pre-registered contrast over a KL window, seeds and prefixes
resampled), :mod:`~.holm` (Holm-adjusted exploratory comparisons), :mod:`~.paired` (paired differences
over prompts) and :mod:`~.best_of_n` (best-of-N's reward from M scored samples and its analytical KL).
"""
