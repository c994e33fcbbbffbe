"""Deprecation notices that torch, fastai and pandas raise at import, hidden: they are not the user's to act on.

`quiet_dependencies` is called by the CLI (`mrisr.cli.main`) and by every notebook (`mrisr.notebook.project_dir`),
before fastai is imported. Each filter names one message, so that every other warning (ours included) still shows.
"""

from __future__ import annotations

import warnings

DEPENDENCY_NOTICES = (
    # (message regex, category, module regex): the module that raises it
    (r".*torch\.jit\.script.* is deprecated", FutureWarning, ""),  # fastai's import of torch.jit.script
    (r".*mode\.chained_assignment", Warning, r"fastai\."),  # fastai.tabular sets a pandas option pandas 3 dropped
    (r"numpy\.core is deprecated", DeprecationWarning, r"fastai\."),  # fastai.learner imports numpy.core
)


def quiet_dependencies() -> None:
    """Hide `DEPENDENCY_NOTICES` (in this process, from now on)."""
    for message, category, module in DEPENDENCY_NOTICES:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
