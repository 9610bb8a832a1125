"""`hydra/launcher=parallel`: Hydra's joblib launcher, which knows a stop signal from a failure
(launcher.py). Hydra instantiates launchers from the `hydra_plugins` namespace package only."""
