"""Users' own checkpoints: read safely, recognise the architecture and scale, write a card.

`add_model(FILE, models_dir=DIR)` turns a `.safetensors` or `.pth`/`.pt` file into
`DIR/<name>.safetensors` + `DIR/<name>.json`; the service's catalog (SRSERVE_MODELS_DIR) then lists
it and the worker loads it through `registry.load_descriptor` like any shipped model.

Safety: `.safetensors` holds only tensors; `.pth`/`.pt` is read with `torch.load(weights_only=True)`,
whose restricted unpickler refuses any object other than tensors and plain containers, so a file
whose pickle would run code is refused before anything runs. We never fall back to a full unpickle.

Recognition reads the state dict's key names and tensor shapes, one small rule per architecture
(spandrel does the same, but importing it needs torchvision, which does not import beside our torch):
ESRGAN / Real-ESRGAN RRDBNet (old `model.N` and new `conv_first` key styles), SwinIR (classical and
lightweight), EDSR (ours and the authors' checkpoints, whose `sub_mean` reveals the pixel range),
SRResNet, and our Y-channel FSRCNN, ESPCN, SRCNN and VDSR. The detected model is then built and
loaded with `strict=True` and run once, so a rule that guessed wrong is an error, not a bad card.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from model_store.card import NAME_PATTERN, Catalog, ModelCard
from model_store.registry import arch_spec, count_params, create_model, sha256_file

log = logging.getLogger(__name__)

ALLOWED_SUFFIXES = (".safetensors", ".pth", ".pt")
MAX_FILE_BYTES = 4 << 30  # the largest SR checkpoints (HAT-L, SwinIR-L) are well under 1 GiB
# training frameworks nest the weights under one of these (BasicSR: params_ema preferred over params)
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "net_g", "generator", "model")
SERVABLE_SCALES = (2, 3, 4, 8)

PAPERS: dict[str, str] = {
    "esrgan": "Wang et al., ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks, ECCVW 2018",
    "swinir": "Liang et al., SwinIR: Image Restoration Using Swin Transformer, ICCVW 2021",
    "edsr": "Lim et al., Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017",
    "srresnet": "Ledig et al., Photo-Realistic Single Image Super-Resolution Using a GAN, CVPR 2017",
}


class UserModelError(ValueError):
    """A checkpoint we refuse, with a message meant for the person who supplied it."""


@dataclass(frozen=True)
class Detection:
    arch: str
    scales: list[int]
    arch_args: dict[str, int | float | str | bool | list[int]]
    state: dict[str, torch.Tensor] = field(repr=False)
    description: str


# ---- reading -------------------------------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from training-framework containers; refuses
    anything that is not plain tensors."""
    if path.suffix.lower() not in ALLOWED_SUFFIXES:
        raise UserModelError(f"{path.name}: only {', '.join(ALLOWED_SUFFIXES)} files are accepted")
    if not path.is_file():
        raise UserModelError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserModelError(f"{path.name}: {size / 2**30:.1f} GiB is larger than the {MAX_FILE_BYTES >> 30} GiB limit")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserModelError(f"{path.name}: not a readable safetensors file ({exc})") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
        except pickle.UnpicklingError as exc:
            # weights_only refuses every global that is not a tensor or plain container: the file asks
            # to build (or run) arbitrary Python objects, which we never do
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserModelError(
                f"{path.name}: refused: the pickle holds objects other than tensors, so it cannot be loaded "
                f"safely ({first_line}). Re-save it as a plain state dict or as .safetensors."
            ) from exc
        except Exception as exc:  # corrupt zip, truncated file, not a pickle at all
            raise UserModelError(
                f"{path.name}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
            ) from exc
    return _unwrap(obj, path.name)


def _unwrap(obj: object, label: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise UserModelError(f"{label}: holds a {type(obj).__name__}, not a dict of tensors")
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        else:
            raise UserModelError(
                f"{label}: not a state dict (no tensors at the top level or under {', '.join(WRAPPER_KEYS)}); "
                f"top-level keys: {sorted(map(str, obj))[:8]}"
            )
    state = {str(k): v for k, v in obj.items()}
    if not state:
        raise UserModelError(f"{label}: holds no tensors")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


# ---- recognition ---------------------------------------------------------------------------------


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    """Distinct values of the first group of `pattern` over the keys."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.fullmatch(k))})


def _pow2_or_3(n_stages: int, first_out: int, feat: int) -> int:
    # pixel-shuffle upsamplers: one conv to 9*feat channels is x3, otherwise one x2 stage per conv
    return 3 if n_stages == 1 and first_out == 9 * feat else 2**n_stages


def _detect_esrgan_new(state: dict[str, torch.Tensor], scale: int | None) -> Detection | None:
    if not {"conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_last.weight"} <= state.keys():
        return None
    in_ch = state["conv_first.weight"].shape[1]
    unshuffle = {3: 1, 12: 2, 48: 4}.get(in_ch)
    if unshuffle is None:
        raise UserModelError(f"RRDBNet with {in_ch} input channels: only RGB models (3, 12 or 48) are supported")
    n_up = _count(state, r"conv_up(\d+)\.weight")
    return Detection(
        arch="esrgan",
        scales=[2**n_up // unshuffle],
        arch_args={
            "num_feat": state["conv_first.weight"].shape[0],
            "num_block": _count(state, r"body\.(\d+)\.rdb1\.conv1\.weight"),
            "num_grow_ch": state["body.0.rdb1.conv1.weight"].shape[0],
            "num_upsample": n_up,
        },
        state=state,
        description="ESRGAN/Real-ESRGAN RRDBNet (BasicSR key names)",
    )


_OLD_RRDB = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)")
_OLD_BODY_CONV = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
_OLD_TOP = re.compile(r"model\.(\d+)\.(weight|bias)")


def _detect_esrgan_old(state: dict[str, torch.Tensor], scale: int | None) -> Detection | None:
    if "model.0.weight" not in state or "model.1.sub.0.RDB1.conv1.0.weight" not in state:
        return None
    top = sorted({int(m.group(1)) for k in state if (m := _OLD_TOP.fullmatch(k))})
    last = top[-1]
    n_up, rem = divmod(last - 4, 3)  # conv_first, body, then (upsample, conv, lrelu) x n, hr, lrelu, last
    if rem or n_up < 0 or top != [0, *[3 + 3 * i for i in range(n_up)], last - 2, last]:
        raise UserModelError(f"old-style ESRGAN checkpoint with an unknown layer layout (top-level layers {top})")
    mapping = {0: "conv_first", last - 2: "conv_hr", last: "conv_last"}
    mapping.update({3 + 3 * i: f"conv_up{i + 1}" for i in range(n_up)})
    n_block = _count(state, r"model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight")
    new: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := _OLD_RRDB.fullmatch(key):
            new[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif (m := _OLD_BODY_CONV.fullmatch(key)) and int(m[1]) == n_block:
            new[f"conv_body.{m[2]}"] = value
        elif (m := _OLD_TOP.fullmatch(key)) and int(m[1]) in mapping:
            new[f"{mapping[int(m[1])]}.{m[2]}"] = value
        else:
            raise UserModelError(f"old-style ESRGAN checkpoint with an unexpected key {key!r}")
    if state["model.0.weight"].shape[1] != 3:
        raise UserModelError("old-style ESRGAN checkpoint that is not RGB (3 input channels)")
    return Detection(
        arch="esrgan",
        scales=[2**n_up],
        arch_args={
            "num_feat": state["model.0.weight"].shape[0],
            "num_block": n_block,
            "num_grow_ch": state["model.1.sub.0.RDB1.conv1.0.weight"].shape[0],
            "num_upsample": n_up,
        },
        state=new,
        description="ESRGAN RRDBNet (original key names, converted)",
    )


def _detect_swinir(state: dict[str, torch.Tensor], scale: int | None) -> Detection | None:
    table_key = "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"
    if table_key not in state or "conv_first.weight" not in state:
        return None
    # non-learned buffers of the authors' code: recomputed here for any input size
    state = {k: v for k, v in state.items() if not k.endswith(("relative_position_index", "attn_mask"))}
    if state["conv_first.weight"].shape[1] != 3:
        raise UserModelError("SwinIR checkpoint that is not RGB (grayscale/denoising variants are not served)")
    if "layers.0.conv.weight" not in state:
        raise UserModelError("SwinIR with the '3conv' residual connection (real-world models) is not supported")
    if "patch_embed.norm.weight" not in state:
        raise UserModelError("SwinIR without patch normalisation is not supported")
    embed_dim = state["conv_first.weight"].shape[0]
    n_layers = _count(state, r"layers\.(\d+)\.residual_group\.blocks\.0\.norm1\.weight")
    depths = [_count(state, rf"layers\.{i}\.residual_group\.blocks\.(\d+)\.norm1\.weight") for i in range(n_layers)]
    heads = [
        state[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1] for i in range(n_layers)
    ]
    window = (math.isqrt(state[table_key].shape[0]) + 1) // 2
    mlp_ratio = state["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
    args: dict[str, int | float | str | bool | list[int]] = {
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": heads,
        "window_size": window,
        "mlp_ratio": mlp_ratio,
    }
    if "conv_up1.weight" in state:
        raise UserModelError("SwinIR with the 'nearest+conv' upsampler (real-world models) is not supported")
    if "conv_before_upsample.0.weight" in state:
        num_feat = state["conv_before_upsample.0.weight"].shape[0]
        n_stages = _count(state, r"upsample\.(\d+)\.weight")
        found = _pow2_or_3(n_stages, state["upsample.0.weight"].shape[0], num_feat)
        args.update(upsampler="pixelshuffle", num_feat=num_feat)
        kind = "classical"
    elif "upsample.0.weight" in state:
        found = math.isqrt(state["upsample.0.weight"].shape[0] // 3)
        args["upsampler"] = "pixelshuffledirect"
        kind = "lightweight"
    else:
        raise UserModelError("SwinIR without an upsampler (a denoising/JPEG model) is not super-resolution")
    return Detection("swinir", [found], args, state, f"SwinIR ({kind}), embed_dim {embed_dim}, depths {depths}")


def _detect_edsr(state: dict[str, torch.Tensor], scale: int | None) -> Detection | None:
    if not {"sub_mean.weight", "sub_mean.bias", "head.0.weight", "tail.0.0.weight"} <= state.keys():
        return None
    num_feat = state["head.0.weight"].shape[0]
    # the authors' MeanShift bias is -rgb_range * DIV2K mean (std 1): it tells [0, 1] from [0, 255] models
    img_range = float(round(-float(state["sub_mean.bias"][0]) / 0.4488, 3))
    if img_range <= 0:
        raise UserModelError("EDSR checkpoint with an unexpected mean-shift layer")
    n_stages = _count(state, r"tail\.0\.(\d+)\.weight")
    found = _pow2_or_3(n_stages, state["tail.0.0.weight"].shape[0], num_feat)
    num_block = _count(state, r"body\.(\d+)\.body\.0\.weight")
    # res_scale is not stored; the paper uses 0.1 only for its large 256-channel model
    res_scale = 0.1 if num_feat >= 256 else 1.0
    args: dict[str, int | float | str | bool | list[int]] = {
        "num_feat": num_feat,
        "num_block": num_block,
        "res_scale": res_scale,
        "img_range": 255.0 if abs(img_range - 255.0) < 0.5 else (1.0 if abs(img_range - 1.0) < 0.01 else img_range),
    }
    return Detection("edsr", [found], args, state, f"EDSR, {num_block} blocks x {num_feat} channels")


def _detect_srresnet(state: dict[str, torch.Tensor], scale: int | None) -> Detection | None:
    if not {"head.0.weight", "body_tail.0.weight", "upsample.0.weight", "conv_last.weight"} <= state.keys():
        return None
    num_feat = state["head.0.weight"].shape[0]
    convs = [k for k in state if re.fullmatch(r"upsample\.\d+\.weight", k) and state[k].dim() == 4]
    found = _pow2_or_3(len(convs), state["upsample.0.weight"].shape[0], num_feat)
    num_block = _count(state, r"body\.(\d+)\.body\.0\.weight")
    args: dict[str, int | float | str | bool | list[int]] = {
        "num_feat": num_feat, "num_block": num_block, "mean_shift": "mean" in state,
    }
    return Detection("srresnet", [found], args, state, f"SRResNet, {num_block} blocks x {num_feat} channels")


def _body_convs(state: Mapping[str, torch.Tensor]) -> list[torch.Tensor] | None:
    """The 4-D weights `body.N.weight` in order, when the whole model is one `body` Sequential."""
    idx = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"body\.(\d+)\.weight", k)))
    if not idx:
        return None
    return [state[f"body.{i}.weight"] for i in idx if state[f"body.{i}.weight"].dim() == 4]


def _needs_scale(arch: str, scale: int | None) -> list[int]:
    if scale is None:
        raise UserModelError(f"a {arch} checkpoint does not record its scale in the weights: pass --scale")
    return [scale]


def _detect_y_cnn(state: dict[str, torch.Tensor], scale: int | None) -> Detection | None:
    """Our Y-channel CNNs (FSRCNN, ESPCN, SRCNN, VDSR): one `body` Sequential of convs, 1 input channel."""
    convs = _body_convs(state)
    if not convs or convs[0].shape[1] != 1:
        return None
    if "deconv.weight" in state:
        d, s = convs[0].shape[0], convs[1].shape[0]
        m = sum(1 for w in convs if tuple(w.shape) == (s, s, 3, 3))
        return Detection(
            "fsrcnn", _needs_scale("fsrcnn", scale), {"d": d, "s": s, "m": m, "residual": True}, state,
            "FSRCNN (bicubic skip assumed, as ours)",
        )
    if set(state) - {k for k in state if k.startswith("body.")}:
        return None
    if len(convs) == 3 and convs[0].shape[-1] == 5 and convs[2].shape[0] > 1:
        found = math.isqrt(convs[2].shape[0])
        args: dict[str, int | float | str | bool | list[int]] = {"n1": convs[0].shape[0], "n2": convs[1].shape[0]}
        return Detection("espcn", [found], args, state, "ESPCN (tanh activation assumed)")
    if len(convs) == 3 and convs[2].shape[0] == 1:
        args = {"n1": convs[0].shape[0], "n2": convs[1].shape[0]}
        return Detection("srcnn", _needs_scale("srcnn", scale), args, state, "SRCNN (residual assumed)")
    if len(convs) >= 4 and all(w.shape[-1] == 3 for w in convs) and convs[-1].shape[0] == 1:
        args = {"depth": len(convs), "features": convs[0].shape[0]}
        return Detection("vdsr", [scale] if scale else [2, 3, 4], args, state, f"VDSR, {len(convs)} layers")
    return None


Detector = Callable[[dict[str, torch.Tensor], int | None], Detection | None]
DETECTORS: tuple[tuple[str, Detector], ...] = (
    ("esrgan", _detect_esrgan_new),
    ("esrgan (old keys)", _detect_esrgan_old),
    ("swinir", _detect_swinir),
    ("edsr", _detect_edsr),
    ("srresnet", _detect_srresnet),
    ("fsrcnn/espcn/srcnn/vdsr", _detect_y_cnn),
)


def detect(state: dict[str, torch.Tensor], scale: int | None = None) -> Detection:
    """Recognise the architecture, its arguments and scale; `scale` confirms (or supplies) the scale."""
    for _, rule in DETECTORS:
        found = rule(state, scale)
        if found is None:
            continue
        if scale is not None and scale not in found.scales:
            raise UserModelError(f"the weights are a x{found.scales[0]} {found.arch} model, not x{scale}")
        bad = [s for s in found.scales if s not in SERVABLE_SCALES]
        if bad:
            raise UserModelError(f"scale x{bad[0]} is not served (supported: {list(SERVABLE_SCALES)})")
        return found
    sample = sorted(state)[:6]
    raise UserModelError(
        "unrecognised architecture: supported are "
        + ", ".join(name for name, _ in DETECTORS)
        + f"; the file's first keys are {sample}"
    )


def build_and_verify(det: Detection) -> nn.Module:
    """Build the detected network, load the weights strictly and run it once on a small input."""
    try:
        module = create_model(det.arch, scale=det.scales[0], **det.arch_args)
    except (TypeError, ValueError) as exc:
        raise UserModelError(f"detected {det.description}, but it cannot be built: {exc}") from exc
    try:
        module.load_state_dict(det.state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).split("\n\t", 2)
        raise UserModelError(
            f"detected {det.description}, but the weights do not fit it: {' '.join(detail[:2])}"
        ) from exc
    module.eval().requires_grad_(False)
    in_ch = 1 if arch_spec(det.arch).channels == "y" else 3
    side = 16 * int(getattr(module, "size_multiple", 1))
    with torch.inference_mode():
        out = module(torch.rand(1, in_ch, side, side))
    expected = (1, in_ch, side * det.scales[0], side * det.scales[0])
    if tuple(out.shape) != expected or not torch.isfinite(out).all():
        raise UserModelError(
            f"detected {det.description}, but a test run gave {tuple(out.shape)} (expected {expected})"
        )
    return module


# ---- the models folder ---------------------------------------------------------------------------


def default_name(path: Path) -> str:
    stem = path.name.split(".")[0].lower()
    name = re.sub(r"[^a-z0-9_.-]+", "_", stem).strip("_.-")[:64]
    if not NAME_PATTERN.fullmatch(name):
        raise UserModelError(f"cannot make a model name from {path.name!r}: pass --name")
    return name


def _check_name(name: str, models_dir: Path, extra_dirs: list[Path]) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise UserModelError(
            f"invalid model name {name!r}: use 1-64 lower-case letters, digits, '_', '.' or '-', starting with a "
            "letter or digit"
        )
    catalog = Catalog.load([models_dir, *extra_dirs])
    taken = {c.name for c in catalog} | {c.family for c in catalog}
    if name in taken or (models_dir / f"{name}.json").exists() or (models_dir / f"{name}.safetensors").exists():
        raise UserModelError(f"model name {name!r} is already taken: choose another with --name")


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def add_model(
    path: Path,
    *,
    models_dir: Path,
    name: str | None = None,
    scale: int | None = None,
    extra_dirs: list[Path] | None = None,
) -> ModelCard:
    """Import a checkpoint into `models_dir`: weights as safetensors plus a `source='user'` card."""
    from safetensors.torch import save_file

    from model_store.profiling import flops_per_output_pixel

    path = Path(path)
    name = name if name is not None else default_name(path)
    models_dir.mkdir(parents=True, exist_ok=True)
    _check_name(name, models_dir, extra_dirs or [])
    state = read_state_dict(path)
    det = detect(state, scale)
    module = build_and_verify(det)

    weights = models_dir / f"{name}.safetensors"
    # own copies: checkpoints often share storage between keys, which safetensors refuses
    tensors = {k: v.detach().clone().contiguous() for k, v in det.state.items()}
    _atomic(weights, lambda p: save_file(tensors, str(p), metadata={"arch": det.arch, "source_file": path.name}))
    in_ch = 1 if arch_spec(det.arch).channels == "y" else 3
    card = ModelCard(
        name=name,
        family=name,  # never joins a shipped family: `model=<family>` must keep meaning the shipped one
        architecture=det.arch,
        arch_args=det.arch_args,
        scales=det.scales,
        channels=arch_spec(det.arch).channels,  # type: ignore[arg-type]
        params=count_params(module),
        flops_per_output_pixel=flops_per_output_pixel(module, in_ch, det.scales[0]),
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        half_precision_safe=False,  # unmeasured
        receptive_field=int(getattr(module, "receptive_field", 16)),
        size_multiple=int(getattr(module, "size_multiple", 1)),
        results=[],
        paper=PAPERS.get(det.arch, ""),
        licence="unknown (user-supplied weights)",
        source="user",
        notes=(
            f"Added by `srserve models add` from {path.name} (sha256 {sha256_file(path)}); detected "
            f"{det.description}. Not measured here: run `srserve eval {name}` for PSNR/SSIM."
        ),
    )
    try:
        _atomic(models_dir / f"{name}.json", lambda p: p.write_text(card.model_dump_json(indent=2) + "\n"))
    except BaseException:
        weights.unlink(missing_ok=True)
        raise
    log.info("added %s (%s x%s) to %s", name, det.arch, det.scales, models_dir)
    return card


def list_models(models_dirs: list[Path]) -> list[tuple[ModelCard, Path]]:
    """Users' cards in the folders, with the folder each came from."""
    found = []
    for folder in models_dirs:
        for card_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                card = ModelCard.model_validate_json(card_path.read_text())
            except (ValueError, OSError) as exc:
                log.warning("skipping unreadable card %s: %s", card_path, exc)
                continue
            if card.source == "user":
                found.append((card, folder))
    return found


def remove_model(name: str, models_dir: Path) -> ModelCard:
    card_path = models_dir / f"{name}.json"
    if not NAME_PATTERN.fullmatch(name) or not card_path.is_file():
        raise UserModelError(f"no model {name!r} in {models_dir}")
    card = ModelCard.model_validate_json(card_path.read_text())
    if card.source != "user":
        raise UserModelError(f"{name!r} is a {card.source} model; only users' models can be removed")
    card_path.unlink()  # the card first: the catalog stops listing it before its weights disappear
    if card.weights_file:
        (models_dir / card.weights_file).unlink(missing_ok=True)
    return card
