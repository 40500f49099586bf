"""Location of the shared data folder (``../shared``): ``$PMARGIN_SHARED`` or default places.

An explicit ``PMARGIN_SHARED`` is a promise: if it does not point at a directory (holding what
the caller needs), that is an error, never a silent fall-back to another folder or to generated
data. Without the variable the default places are tried and ``None`` means "not found".
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pmargin.errors import InvalidInput

__all__ = ["ENV_VAR", "shared_folder"]

ENV_VAR = "PMARGIN_SHARED"
"""Environment variable naming the shared folder."""


def shared_folder(defaults: Iterable[Path] = (), require: str | None = None) -> Path | None:
    """Return the shared folder.

    Parameters
    ----------
    defaults : iterable of Path
        Places tried in order when ``PMARGIN_SHARED`` is unset or empty.
    require : str, optional
        A sub-folder the caller needs (``"data/deribit"``): a default place lacking it is
        skipped; an explicit ``PMARGIN_SHARED`` lacking it is an error.

    Returns
    -------
    Path or None
        The folder; ``None`` when the variable is unset and no default place qualifies.

    Raises
    ------
    InvalidInput
        If ``PMARGIN_SHARED`` is set to something that is not a directory, or to a directory
        without ``require``. The field is ``PMARGIN_SHARED`` and the value its text.
    """
    env = os.environ.get(ENV_VAR, "")
    if env.strip():
        p = Path(env).expanduser()
        if not p.is_dir():
            reason = "is not a directory" if p.exists() else "no such directory"
            raise InvalidInput(ENV_VAR, env, reason)
        if require is not None and not (p / require).is_dir():
            raise InvalidInput(ENV_VAR, env, f"has no {require} folder")
        return p
    for c in defaults:
        if c.is_dir() and (require is None or (c / require).is_dir()):
            return c
    return None
