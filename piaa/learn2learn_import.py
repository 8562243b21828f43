"""Import learn2learn on demand, or fail with one line that says how to install it.

learn2learn is optional (docs/learn2learn.md): `make install-learn2learn` puts it in the vision venv,
because its import needs torchvision. Both the tasks layer (raters as learn2learn tasks) and the
meta-learning engine import it through here, and only when a user asks for it.
"""

from __future__ import annotations

import contextlib
import io

from piaa.errors import ConfigError


def import_learn2learn(purpose: str):
    """The learn2learn module; a ConfigError naming `purpose` and the install command when it does not import."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # gym 0.26, which learn2learn imports, prints a notice
            import learn2learn
    except Exception as exc:  # ImportError, or torchvision failing to import beside this torch
        reason = (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"{purpose} needs learn2learn 0.2.0 (with torchvision), which does not import here ({reason}); "
            "install it into the vision venv with `make install-learn2learn` (see docs/learn2learn.md)"
        ) from None
    return learn2learn
