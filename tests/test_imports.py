"""Every module imports on its own, first: no import cycle hides behind an import order."""

import pkgutil
import subprocess
import sys

import ai_api

SCRIPT = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "ai_api" or m.startswith("ai_api.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {exc!r}")
print("\\n".join(failed))
"""


def test_every_module_imports_first():
    names = [m.name for m in pkgutil.walk_packages(ai_api.__path__, "ai_api.")]
    assert "ai_api.gateway" in names
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *names], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
