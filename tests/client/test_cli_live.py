"""`srserve upscale` end to end: the real CLI entry point against the real service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import REPO_ROOT, LiveService, free_port


def srserve(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the real `srserve` entry point as a user would."""
    env = {**os.environ, "SRSERVE_LOG_FORMAT": "text"}
    return subprocess.run(
        [sys.executable, "-m", "srserve.cli", *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip


def _folder_of_two(data_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for n in (2, 3):
        shutil.copy(data_dir / "eval" / "Set5" / "x2" / f"img_{n:03d}_LR.png", dest / f"set5_{n}.png")
    return dest


def test_folder_of_two_images(live: LiveService, data_dir: Path, tmp_path: Path) -> None:
    src = _folder_of_two(data_dir, tmp_path / "in")
    out = tmp_path / "out"
    run = srserve("upscale", str(src), "-o", str(out), "--url", live.base_url, "--model", "bicubic",
                  "--scale", "2", "--concurrency", "2", "--progress")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    for n in (2, 3):
        w, h = Image.open(src / f"set5_{n}.png").size
        assert Image.open(out / f"set5_{n}_x2.png").size == (2 * w, 2 * h)
        assert f"set5_{n}.png" in run.stdout
    assert run.stdout.count("succeeded") == 2
    assert "LR-CONS" in run.stdout and "2 of 2 done, 0 failed" in run.stdout
    assert len(re.findall(r"set5_\d\.png +100%", run.stderr)) >= 2  # one progress bar per file, each run to completion
    assert "HTTP Request" not in run.stderr  # no per-poll log noise under the bars


def test_one_bad_input_fails_the_run_but_not_the_others(live: LiveService, data_dir: Path, tmp_path: Path) -> None:
    good = data_dir / "eval" / "Set5" / "x2" / "img_002_LR.png"
    bad = tmp_path / "notes.png"  # the extension lies: the service must judge the bytes
    bad.write_text("not an image\n")
    out = tmp_path / "out"
    run = srserve("upscale", str(good), str(bad), "-o", str(out), "--url", live.base_url, "--model", "bicubic",
                  "--scale", "2")  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert (out / "img_002_LR_x2.png").is_file()
    assert not (out / "notes_x2.png").exists()
    assert "not_an_image" in run.stdout and "1 of 2 done, 1 failed" in run.stdout


def test_no_wait_prints_job_ids(live: LiveService, data_dir: Path) -> None:
    lr = data_dir / "eval" / "Set5" / "x2" / "img_003_LR.png"
    run = srserve("upscale", str(lr), "--no-wait", "--url", live.base_url, "--model", "bicubic", "--scale", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    row = next(line for line in run.stdout.splitlines() if line.startswith("img_003_LR.png"))
    job_id = row.split()[1]
    assert live.wait_for(job_id, {"succeeded"}, timeout=60)["model"] == "bicubic"


def test_unreachable_service_exits_non_zero(tmp_path: Path, data_dir: Path) -> None:
    lr = data_dir / "eval" / "Set5" / "x2" / "img_003_LR.png"
    run = srserve("upscale", str(lr), "-o", str(tmp_path / "o"), "--url", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1
    assert "ConnectError" in run.stdout
