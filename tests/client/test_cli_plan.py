"""`srserve upscale` argument handling that needs no service: input expansion, output naming, usage errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from srserve.commands import upscale


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    upscale.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["upscale", *argv])


def test_folder_expands_to_sorted_images_only(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    extra = tmp_path / "sub" / "explicit.txt"
    extra.write_bytes(b"x")
    found = upscale.collect_inputs([str(tmp_path), str(extra)])
    # folder: images only; an explicitly named file is always sent (the service judges it)
    assert [p.name for p in found] == ["a.JPG", "b.png", "explicit.txt"]
    with pytest.raises(FileNotFoundError):
        upscale.collect_inputs([str(tmp_path / "missing.png")])


def test_output_names_do_not_collide(tmp_path: Path) -> None:
    srcs = [Path("x/a.png"), Path("y/a.jpg"), Path("b.webp")]
    tasks = upscale.plan_outputs(srcs, str(tmp_path / "out"), 4, "jpeg", burst=False, wait=True)
    assert [t.output.name for t in tasks if t.output] == ["a_x4.jpg", "a_x4_2.jpg", "b_x4.jpg"]
    assert (tmp_path / "out").is_dir()
    one = upscale.plan_outputs(srcs[:1], str(tmp_path / "single.png"), 2, "png", burst=False, wait=True)
    assert one[0].output == tmp_path / "single.png"
    burst = upscale.plan_outputs(srcs, str(tmp_path / "o2"), 2, "png", burst=True, wait=True)
    assert len(burst) == 1 and burst[0].sources == srcs and burst[0].output.name == "a_x2_burst.png"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/missing.png", "-o", "{tmp}/o"], "no such file"),
        (["{tmp}/a.png", "{tmp}/b.png", "--reference", "{tmp}/a.png", "-o", "{tmp}/o"], "--reference"),
        (["{tmp}/a.png", "--burst", "-o", "{tmp}/o"], "at least two"),
        (["{tmp}/a.png"], "-o/--output is required"),
        (["{tmp}/empty"], "no image files"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    args = _parse([a.format(tmp=tmp_path) for a in argv])
    assert upscale.run(args) == upscale.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_table_aligns_columns() -> None:
    text = upscale.format_table(["A", "LONGER"], [["xxxx", "1"], ["y", "22"]])
    lines = text.splitlines()
    assert lines[0] == "A     LONGER"
    assert lines[1] == "----  ------"
    assert lines[2] == "xxxx  1"
