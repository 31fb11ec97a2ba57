"""The plugin author's API: the one hook (:mod:`~genreg.plugin.hookspecs`), the registry of named components
(:mod:`~genreg.plugin.registry`), the plugin manager that fills it from entry points
(:mod:`~genreg.plugin.manager`) and what each kind of component provides (:mod:`~genreg.plugin.protocols`).
"""
