"""MLflow I/O that both stages share: opening stores safely, and (see the modules) the layout.

The runtime writes runs and the analysis reads them through this package; neither imports the
other. Imports nothing from kdspec but ``plan``, ``errors`` and ``tracking.schema``.
"""
