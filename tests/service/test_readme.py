"""The README's configuration table lists every setting of every process, so it cannot drift."""

from __future__ import annotations

import pytest

from service.settings import ServiceSettings
from srserve.config import CommonSettings
from tests.conftest import REPO_ROOT
from worker.settings import WorkerSettings


@pytest.mark.parametrize("cls", [CommonSettings, ServiceSettings, WorkerSettings])
def test_every_setting_is_documented(cls: type[CommonSettings]) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name in cls.model_fields:
        env = "REDIS_URL" if name == "redis_url" else f"SRSERVE_{name.upper()}"
        assert f"| `{env}` |" in readme, f"{env} is missing from the README's configuration table"


def test_readme_quick_start_commands_exist() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "scripts/dev.sh serve" in readme and "scripts/dev.sh test" in readme
    assert (REPO_ROOT / "scripts" / "dev.sh").stat().st_mode & 0o111
    assert "scripts/dev.sh test" in (REPO_ROOT / ".ci" / "run").read_text()
