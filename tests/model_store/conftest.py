"""Fixtures of the model-store tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_store.data import data_root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one 64x64 crop of a T91 image: a training set that trains in seconds."""
    folder = tmp_path_factory.mktemp("train")
    with Image.open(data_root() / "train" / "T91" / "t1.png") as img:
        Image.fromarray(np.asarray(img.convert("RGB"))[:64, :64]).save(folder / "crop.png")
    return folder
