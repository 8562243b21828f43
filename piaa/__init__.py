"""piaa: personalized image aesthetics assessment by meta-learning.

The public surface, imported on first use so that `import piaa` stays fast:

    piaa.load(run=None)            a trained run as a model: .adapt(images, scores, user=...) → Profile
    piaa.ProfileStore(path)        adapted users in one SQLite file: save, load, list, delete
    piaa.list_methods(), piaa.create_method(name), piaa.read_dataset(dir), piaa.evaluate(method, data)
"""

__version__ = "0.1.0"

from pathlib import Path as _Path

from piaa import _source_tree

_source_tree.install(_Path(__file__).resolve().parent)
del _Path

_EXPORTS = {
    "load": "piaa.personalize",
    "Personalizer": "piaa.personalize",
    "Profile": "piaa.personalize",
    "ProfileStore": "piaa.profiles",
    "ProfileError": "piaa.profiles",
    "PiaaError": "piaa.errors",
    "list_methods": "piaa.registry",
    "create_method": "piaa.registry",
    "register_method": "piaa.registry",
    "read_dataset": "piaa.tasks.format",
    "evaluate": "piaa.protocol",
}
__all__ = ["__version__", *_EXPORTS]

from piaa.plugins import lazy_exports as _lazy_exports  # noqa: E402  (after the source-tree finder)

__getattr__, __dir__ = _lazy_exports("piaa", globals(), _EXPORTS)
