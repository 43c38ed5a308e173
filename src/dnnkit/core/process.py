"""Running another Python (an oracle's own venv) in a subprocess without leaking our import path.

Some libraries change ``os.environ`` of the running process (Ray, for example, puts its own
site-packages on ``PYTHONPATH``); a child interpreter of a different venv that inherited that
would import the wrong numpy. :func:`isolated_python_env` gives the environment to pass instead.
"""

from __future__ import annotations

import os

__all__ = ["isolated_python_env"]

_LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
          "PYTHONEXECUTABLE")


def isolated_python_env(**extra: str) -> dict[str, str]:
    """A copy of ``os.environ`` without the variables that steer Python's imports, plus ``extra``.

    Examples
    --------
    >>> env = isolated_python_env(OMP_NUM_THREADS="1")
    >>> "PYTHONPATH" in env, env["OMP_NUM_THREADS"]
    (False, '1')
    """
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env.update(extra)
    return env
