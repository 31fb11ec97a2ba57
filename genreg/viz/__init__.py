"""Every picture genreg draws, drawn as a matplotlib figure and saved or rendered apart
(:mod:`~genreg.viz.figures`): sample grids and reconstructions (:mod:`~genreg.viz.samples`), latent scatters
and comparisons (:mod:`~genreg.viz.latent`), the manifold, interpolations and transfer
(:mod:`~genreg.viz.explore`); for vectors (a table's rows), each drawn as heatmap rows above a mean profile
(:mod:`~genreg.viz.heatmaps`).
"""
