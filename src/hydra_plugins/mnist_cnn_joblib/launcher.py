"""`hydra/launcher=parallel`: Hydra's joblib launcher, which knows a stop signal from a failure.

The terminal's Ctrl-C reaches a worker that is still starting (before its first job moves it
into a process group of its own: mnist_cnn.sweep_workers); the worker dies of it, and joblib
reports a broken process pool. After a stop signal, that is the signal's doing: the sweep ends as
a stopped sweep does, one line and 128 + the signal, not a traceback and exit 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as _Hydras

from mnist_cnn import sweep_workers
from mnist_cnn.errors import Stopped


class JoblibLauncher(_Hydras):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        try:
            return super().launch(job_overrides, initial_job_idx)
        except (Exception, KeyboardInterrupt):  # the worker's KeyboardInterrupt, re-raised here
            signum = sweep_workers.launcher_done()
            if signum is None:
                raise
            held = sweep_workers.what_jobs_hold(self.config.hydra.sweep.dir) or "no job had begun"
            raise Stopped(signum, f"while the sweep's workers started: {held}") from None
