"""Training: the loop (:mod:`~genreg.training.loop`), one epoch's steps (:mod:`~genreg.training.steps`) and
the optimiser's form (:mod:`~genreg.training.optim`), callbacks (:mod:`~genreg.training.callbacks`), signals
(:mod:`~genreg.training.signals`), several processes (:mod:`~genreg.training.distributed`), ``genreg run``
(:mod:`~genreg.training.runner`) and ``genreg sweep`` (:mod:`~genreg.training.sweep`).
"""
