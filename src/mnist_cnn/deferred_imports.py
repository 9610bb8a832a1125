"""scipy.signal loaded where something uses it, not at every start.

`import lightning` imports torchmetrics (a version check in lightning.fabric), and torchmetrics'
`__init__` imports `scipy.signal` only to alias `scipy.signal.hamming` for SRMRpy, a package
torchmetrics itself never imports (torchmetrics issue #3457; the fix, pull request #3459, is not
released). `scipy.signal` imports scipy.stats, scipy.interpolate and scipy.optimize with it, a
large share of every `train.py`'s start (docs/performance.md), and no run uses any of them.

`defer_scipy_signal()` puts a stand-in under that name before the libraries load. The stand-in
already has the alias (so torchmetrics' shim has nothing to add) and the package's spec and path
(so its submodules import as usual); the first other attribute read on it imports the real
`scipy.signal`, which from then on is the module under that name, the one `scipy.signal` names,
and what the stand-in forwards to. Remove this when torchmetrics stops importing it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

NAME = "scipy.signal"


class _LoadedOnFirstUse(types.ModuleType):
    """`scipy.signal` until an attribute it lacks is read; then the real one behind it."""

    def __getattr__(self, attribute: str):  # only for what the stand-in itself lacks
        return getattr(_load_real(), attribute)


def _hamming(*args, **kwargs):
    """The alias torchmetrics' shim adds (scipy moved it to scipy.signal.windows)."""
    from scipy.signal.windows import hamming

    return hamming(*args, **kwargs)


def _load_real() -> types.ModuleType:
    if isinstance(sys.modules.get(NAME), _LoadedOnFirstUse):
        del sys.modules[NAME]
    real = importlib.import_module(NAME)
    sys.modules["scipy"].signal = real  # what the import system sets on a parent package
    return real


def defer_scipy_signal() -> bool:
    """The stand-in, unless `scipy.signal` is loaded already or scipy is not installed; True when
    it was put in place. Process-wide: only `process.starting_up()` calls it."""
    if NAME in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(NAME)  # imports the light `scipy` package only
    except ModuleNotFoundError:
        return False
    if spec is None:
        return False
    stand_in = _LoadedOnFirstUse(NAME)
    stand_in.__spec__ = spec
    stand_in.__loader__, stand_in.__file__ = spec.loader, spec.origin
    stand_in.__path__ = list(spec.submodule_search_locations or [])
    stand_in.__package__ = NAME
    stand_in.hamming = _hamming
    sys.modules[NAME] = stand_in
    return True
