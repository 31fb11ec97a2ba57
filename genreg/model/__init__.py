"""The generative model (:mod:`~genreg.model.generative`), its assembly from registered parts
(:mod:`~genreg.model.assembly`), its conditions (:mod:`~genreg.model.conditions`), what loss terms share
(:mod:`~genreg.model.losses`), new classes for a trained model (:mod:`~genreg.model.extend`) and what a
trained model's methods take from users (:mod:`~genreg.model.inputs`).
"""
