"""Import the app's script (``function_app.py``) and find its ``FunctionApp``.

Mirrors the Python worker: the app folder goes first on ``sys.path``, the script file
name can be changed with the ``PYTHON_SCRIPT_FILE_NAME`` setting.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import azure.functions as func

from devhost.errors import DevHostError

DEFAULT_SCRIPT = "function_app.py"


def import_script(app_dir: Path, script_file: str | None = None) -> ModuleType:
    """Import ``app_dir/<script_file>`` as a top-level module named after the file.

    A module of that name imported earlier from another folder is replaced, so several
    apps can be loaded one after the other in one process (tests do that).
    """
    script_file = script_file or os.environ.get("PYTHON_SCRIPT_FILE_NAME") or DEFAULT_SCRIPT
    path = (app_dir / script_file).resolve()
    if not path.is_file():
        raise DevHostError(f"{path} not found (is --app-dir the folder of the function app?)")
    app_path = str(app_dir.resolve())
    if app_path in sys.path:
        sys.path.remove(app_path)
    sys.path.insert(0, app_path)
    name = path.stem
    previous = sys.modules.get(name)
    if previous is not None and Path(getattr(previous, "__file__", "") or "").resolve() == path:
        return previous
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def find_app(module: ModuleType) -> func.FunctionRegister:
    """The module's ``app`` attribute if it is a function app, else the first one found."""
    candidate = getattr(module, "app", None)
    if isinstance(candidate, func.FunctionRegister):
        return candidate
    for value in vars(module).values():
        if isinstance(value, func.FunctionRegister):
            return value
    raise DevHostError(f"no FunctionApp instance found in {module.__file__}")
