"""The Optuna search wing: the space (space.py), the study's database (storage.py), what a trial's
job needs (trials.py, pruning.py), the sampler (sampler.py) and the results (results.py).

The sweeper plugin (hydra_plugins/mnist_cnn_optuna) drives a study through these. They live here,
not in the plugin package, because Hydra imports every module under hydra_plugins at the start of
every run: here a run that is not a trial never imports them.
"""
