"""Users' own checkpoints: safe reading, architecture/scale detection, cards the service can load."""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from model_store.card import Catalog
from model_store.registry import create_model, load_descriptor
from model_store.user_models import UserModelError, add_model, detect, list_models, remove_model
from srserve.cli import main as cli_main
from tests.conftest import LiveService, start_live_service

RRDB_ARGS = {"num_feat": 16, "num_block": 2, "num_grow_ch": 8}


def _rrdb(scale: int) -> torch.nn.Module:
    torch.manual_seed(scale)
    return create_model("esrgan", scale=scale, **RRDB_ARGS).eval()


def _to_old_esrgan_keys(state: dict[str, torch.Tensor], n_up: int, n_block: int) -> dict[str, torch.Tensor]:
    """BasicSR names back to the original ESRGAN repository's names (model.N...)."""
    last = 4 + 3 * n_up
    top = {"conv_first": 0, "conv_hr": last - 2, "conv_last": last}
    top.update({f"conv_up{i + 1}": 3 + 3 * i for i in range(n_up)})
    old = {}
    for key, value in state.items():
        if m := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)", key):
            old[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"] = value
        elif key.startswith("conv_body."):
            old[f"model.1.sub.{n_block}.{key.split('.')[1]}"] = value
        else:
            layer, param = key.split(".")
            old[f"model.{top[layer]}.{param}"] = value
    return old


def _check_runs_like(card_name: str, models_dir: Path, reference: torch.nn.Module, scale: int) -> None:
    catalog = Catalog.load([models_dir])
    card = catalog.resolve(card_name, scale)  # selectable by name, like `model=<name>` in the API
    desc = load_descriptor(card, scale, catalog=catalog)
    x = torch.rand(1, 3, 12, 16)
    out = desc(x)
    assert out.shape == (1, 3, 12 * scale, 16 * scale)
    with torch.no_grad():
        torch.testing.assert_close(out, reference(x).clamp(0, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_add_rrdbnet_checkpoint(tmp_path: Path, fmt: str) -> None:
    net = _rrdb(4)
    src = tmp_path / f"My RRDB 4x.{fmt}"
    if fmt == "pth":
        torch.save(net.state_dict(), src)
    else:
        save_file(net.state_dict(), str(src))
    models = tmp_path / "models"
    card = add_model(src, models_dir=models)
    assert card.name == "my_rrdb_4x"
    assert (card.architecture, card.scales, card.source, card.results) == ("esrgan", [4], "user", [])
    assert card.arch_args == {**RRDB_ARGS, "num_upsample": 2}
    assert card.params == sum(p.numel() for p in net.parameters())
    assert card.weights_sha256 and (models / "my_rrdb_4x.safetensors").is_file()
    _check_runs_like("my_rrdb_4x", models, net, 4)


def test_real_esrgan_x2_pixel_unshuffle(tmp_path: Path) -> None:
    net = _rrdb(2)  # conv_first takes 12 channels: the input is pixel-unshuffled by 2
    src = tmp_path / "realesrgan_x2plus.pth"
    torch.save({"params_ema": net.state_dict(), "params": {}}, src)  # Real-ESRGAN's release layout
    card = add_model(src, models_dir=tmp_path / "m")
    assert (card.architecture, card.scales, card.size_multiple) == ("esrgan", [2], 2)
    _check_runs_like(card.name, tmp_path / "m", net, 2)


def test_old_esrgan_keys_are_converted(tmp_path: Path) -> None:
    net = _rrdb(4)
    old = _to_old_esrgan_keys(net.state_dict(), n_up=2, n_block=RRDB_ARGS["num_block"])
    assert "model.1.sub.0.RDB1.conv1.0.weight" in old and "model.10.weight" in old
    src = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(old, src)
    card = add_model(src, models_dir=tmp_path / "m", name="esrgan_old")
    assert card.architecture == "esrgan" and card.scales == [4]
    assert "original key names" in card.notes
    _check_runs_like("esrgan_old", tmp_path / "m", net, 4)


class _Evil:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pth"
    payload = {"conv_first.weight": torch.zeros(1), "x": _Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, src)
    else:
        src.write_bytes(pickle.dumps(payload))
    with pytest.raises(UserModelError, match="objects other than tensors"):
        add_model(src, models_dir=tmp_path / "m")
    assert not marker.exists()
    assert not (tmp_path / "m" / "evil.json").exists()


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("broken.pth", b"PK\x03\x04 not really a zip", "not a readable PyTorch checkpoint"),
        ("broken.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", "not a readable safetensors"),
        ("weights.bin", b"", "only .safetensors, .pth, .pt"),
    ],
)
def test_corrupt_or_foreign_files_are_refused(tmp_path: Path, file_name: str, content: bytes, message: str) -> None:
    src = tmp_path / file_name
    src.write_bytes(content)
    with pytest.raises(UserModelError, match=message):
        add_model(src, models_dir=tmp_path / "m")


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "mystery.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 3, 3, 3), "decoder.weight": torch.zeros(3, 4, 3, 3)}, str(src))
    with pytest.raises(UserModelError, match="unrecognised architecture"):
        add_model(src, models_dir=tmp_path / "m")


def test_weights_that_do_not_fit_the_detected_model_are_refused(tmp_path: Path) -> None:
    state = _rrdb(4).state_dict()
    state["conv_hr.weight"] = torch.zeros(16, 16, 5, 5)  # wrong kernel size
    src = tmp_path / "bad_shapes.safetensors"
    save_file(state, str(src))
    with pytest.raises(UserModelError, match="do not fit"):
        add_model(src, models_dir=tmp_path / "m")


def test_names_are_validated_and_unique(tmp_path: Path) -> None:
    src = tmp_path / "net.pth"
    torch.save(_rrdb(4).state_dict(), src)
    models = tmp_path / "m"
    with pytest.raises(UserModelError, match="invalid model name"):
        add_model(src, models_dir=models, name="Bad Name!")
    with pytest.raises(UserModelError, match="already taken"):
        add_model(src, models_dir=models, name="bicubic")  # a built-in model
    add_model(src, models_dir=models, name="mine")
    with pytest.raises(UserModelError, match="already taken"):
        add_model(src, models_dir=models, name="mine")
    [(card, folder)] = list_models([models])
    assert card.name == "mine" and folder == models
    remove_model("mine", models)
    assert list_models([models]) == [] and not list(models.glob("mine*"))


def _swinir_official_state(**kw: object) -> tuple[torch.nn.Module, dict[str, object]]:
    torch.manual_seed(0)
    net = create_model("swinir", **kw).eval()
    state: dict[str, object] = dict(net.state_dict())
    # the authors' checkpoints also store these buffers; we recompute them
    state["layers.0.residual_group.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    state["layers.0.residual_group.blocks.1.attn_mask"] = torch.zeros(4, 16, 16)
    return net, {"params": state}


@pytest.mark.parametrize(
    ("kw", "expected_scale", "upsampler"),
    [
        ({"scale": 4, "upsampler": "pixelshuffledirect"}, 4, "pixelshuffledirect"),
        ({"scale": 3, "upsampler": "pixelshuffle", "num_feat": 8}, 3, "pixelshuffle"),
        ({"scale": 2, "upsampler": "pixelshuffle", "num_feat": 8}, 2, "pixelshuffle"),
    ],
)
def test_swinir_checkpoints(tmp_path: Path, kw: dict[str, object], expected_scale: int, upsampler: str) -> None:
    small = {"embed_dim": 12, "depths": [2, 2], "num_heads": [2, 3], "window_size": 4, "mlp_ratio": 2.0}
    net, payload = _swinir_official_state(**small, **kw)
    src = tmp_path / "swinir.pth"
    torch.save(payload, src)
    card = add_model(src, models_dir=tmp_path / "m")
    assert card.architecture == "swinir" and card.scales == [expected_scale]
    assert card.arch_args["upsampler"] == upsampler
    assert {k: card.arch_args[k] for k in small} == small
    _check_runs_like("swinir", tmp_path / "m", net, expected_scale)


def test_edsr_authors_pixel_range_is_recovered() -> None:
    torch.manual_seed(0)
    net = create_model("edsr", scale=3, num_feat=16, num_block=2, img_range=255.0)
    det = detect(dict(net.state_dict()))
    assert det.arch == "edsr" and det.scales == [3]
    assert det.arch_args == {"num_feat": 16, "num_block": 2, "res_scale": 1.0, "img_range": 255.0}


@pytest.mark.parametrize(("arch", "scale"), [("srresnet", 2), ("srresnet", 4), ("edsr", 4), ("espcn", 3)])
def test_own_architectures_are_detected(arch: str, scale: int) -> None:
    det = detect(dict(create_model(arch, scale=scale).state_dict()))
    assert (det.arch, det.scales) == (arch, [scale])


@pytest.mark.parametrize("mean_shift", [True, False])
def test_srresnet_mean_shift_is_recovered(mean_shift: bool) -> None:
    # the two variants differ only by the saved `mean` buffer; loading one as the other would shift colours
    net = create_model("srresnet", scale=4, num_feat=16, num_block=2, mean_shift=mean_shift)
    det = detect(dict(net.state_dict()))
    assert det.arch_args == {"num_feat": 16, "num_block": 2, "mean_shift": mean_shift}


def test_scale_free_weights_need_scale(tmp_path: Path) -> None:
    state = dict(create_model("fsrcnn", scale=3).state_dict())
    with pytest.raises(UserModelError, match="pass --scale"):
        detect(state)
    det = detect(state, scale=3)
    assert det.arch == "fsrcnn" and det.scales == [3]
    with pytest.raises(UserModelError, match="not x2"):
        detect(dict(create_model("espcn", scale=3).state_dict()), scale=2)


def test_cli_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "net.safetensors"
    save_file(_rrdb(4).state_dict(), str(src))
    models = str(tmp_path / "m")
    assert cli_main(["models", "add", str(src), "--name", "cli_net", "--models-dir", models]) == 0
    assert "added cli_net: esrgan x4" in capsys.readouterr().out
    assert cli_main(["models", "list", "--models-dir", models]) == 0
    assert "cli_net" in capsys.readouterr().out
    assert cli_main(["models", "add", str(src), "--name", "cli_net", "--models-dir", models]) == 1
    assert "already taken" in capsys.readouterr().out
    assert cli_main(["models", "remove", "cli_net", "--models-dir", models]) == 0
    assert not (tmp_path / "m" / "cli_net.json").exists()


# ---- end to end: a user's third-party checkpoint served by the real API + worker processes --------


@pytest.fixture(scope="module")
def user_model_service(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveService, torch.nn.Module]]:
    """api + worker processes started like `live_service`, with SRSERVE_MODELS_DIR holding one
    RRDBNet added by `srserve models add` (the catalog is read at start-up)."""
    root = tmp_path_factory.mktemp("user_models_live")
    net = _rrdb(4)
    src = root / "thirdparty_x4.pth"
    torch.save(net.state_dict(), src)
    models = root / "models"
    assert cli_main(["models", "add", str(src), "--name", "thirdparty_rrdb", "--models-dir", str(models)]) == 0

    # the service's own queue, so the live_service fixture's worker never takes these jobs
    with start_live_service(redis_url, root, {"SRSERVE_MODELS_DIR": str(models)}, name="test-user-models") as live:
        yield live, net


@pytest.mark.slow
def test_user_model_served_end_to_end(user_model_service: tuple[LiveService, torch.nn.Module]) -> None:
    live, net = user_model_service
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(lr).save(buf, format="PNG")
    with live.client() as c:
        listed = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
        assert listed["thirdparty_rrdb"]["source"] == "user"
        assert listed["thirdparty_rrdb"]["architecture"] == "esrgan"
        resp = c.post(
            "/v1/upscale",
            files={"image": ("in.png", buf.getvalue(), "image/png")},
            data={"model": "thirdparty_rrdb", "scale": "4"},
        )
        assert resp.status_code == 202, resp.text
        job = live.wait_for(resp.json()["id"], {"succeeded", "failed"}, timeout=120)
        assert job["status"] == "succeeded", job
        out = np.asarray(Image.open(io.BytesIO(c.get(job["result"]["url"]).content)).convert("RGB"))
    assert out.shape == (64, 80, 3)
    with torch.no_grad():
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255.0
        expected = (net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255.0).round()
    # the worker may tile or batch: allow one 8-bit level of difference
    assert np.abs(out.astype(np.float64) - expected).max() <= 1.0
