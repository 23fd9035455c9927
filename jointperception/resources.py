"""Where the shipped files are (the bundled models, config/): the one locator every module uses.

A file is looked up, in order, in the source checkout that holds the package (a clone, an
editable pip install, a colcon ``--symlink-install``), then in the share folder of the prefix the
package is installed into: ``<prefix>/share/jointperception/``, where setup.py's ``data_files`` put
it for a plain ``pip install``, ``pip install --prefix``, a venv, or a colcon install without
``--symlink-install`` (the package lives in ``<prefix>/lib/pythonX.Y/site-packages``), and last in
``sys.prefix``'s share folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_NAME = "jointperception"
PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_ROOT = PACKAGE_DIR.parent  # the repository root when the package runs from its source


def resource_roots() -> tuple[Path, ...]:
    """The folders searched, in order: the checkout root, then the share folders of the install prefixes."""
    roots = [CHECKOUT_ROOT]
    if len(PACKAGE_DIR.parents) > 3:  # <prefix>/lib/pythonX.Y/site-packages/jointperception
        roots.append(PACKAGE_DIR.parents[3] / "share" / PACKAGE_NAME)
    roots.append(Path(sys.prefix) / "share" / PACKAGE_NAME)
    return tuple(dict.fromkeys(roots))


def shipped_file(relative: str) -> Path:
    """The first ``root / relative`` that exists (e.g. "models/jointnet_tiny.safetensors"); when none
    does, its place in the checkout, so that the caller's "not found" error names a real location."""
    for root in resource_roots():
        if (root / relative).is_file():
            return root / relative
    return CHECKOUT_ROOT / relative
