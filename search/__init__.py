"""Command-line front end of the NASNet cell search.

``python -m search.run`` (or the ``nasnet-search`` console script) runs a
search with `nasnet_keras.search`: an oracle (``--oracle=rl``, the paper's
PPO controller, or ``random``) samples cells, `CellSearchTuner` trains one
child network per trial, and the project directory collects
``trials.csv``, ``best_genotype.json`` and ``rewards.png``. See
`search.run` for the flags and presets.
"""
