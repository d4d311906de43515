"""The API process must never import torch (directly or through a shared module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_service_app_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from service.main import create_app\n"
        "from service.settings import ServiceSettings\n"
        f"create_app(ServiceSettings(redis_url='redis://127.0.0.1:1/0', blob_dir={str(tmp_path)!r}))\n"
        "import srserve.commands.serve, srserve.cli\n"
        "srserve.cli.build_parser()\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH_MODULES', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TORCH_MODULES []" in proc.stdout
