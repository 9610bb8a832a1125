"""The project's Optuna sweeper for Hydra (`hydra/sweeper=optuna`), on a current Optuna.

Hydra finds it by scanning the `hydra_plugins` namespace package; the config node is registered
when Hydra imports config.py, the sweeper when it instantiates optuna_sweeper.OptunaSweeper.
"""
