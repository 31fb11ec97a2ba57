"""Measuring models: the maths of likelihoods and latent spaces (:mod:`~genreg.evaluation.metrics`), the
reference classifier (:mod:`~genreg.evaluation.classifier`), one model's evaluation and ``eval.json``
(:mod:`~genreg.evaluation.evaluate`) and tables comparing runs (:mod:`~genreg.evaluation.report`).
"""
