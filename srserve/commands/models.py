"""`srserve models add|list|remove`: users' own checkpoints in the models folder (SRSERVE_MODELS_DIR).

`add` reads a .safetensors or .pth/.pt file without unpickling objects, recognises the architecture
and scale, and writes `<name>.safetensors` + `<name>.json` into the folder, where the API's catalog
and the workers find it (`model=<name>` in POST /v1/upscale).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)
EXIT_OK, EXIT_REFUSED = 0, 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "models",
        help="add, list or remove your own model checkpoints",
        description="Manage users' checkpoints in the models folder (--models-dir, else the first "
        "folder of SRSERVE_MODELS_DIR).",
    )
    sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    add = sub.add_parser("add", help="import a .safetensors/.pth checkpoint (architecture and scale detected)")
    add.add_argument("file", type=Path, metavar="FILE")
    add.add_argument("--name", help="model name (default: from the file name)")
    add.add_argument("--scale", type=int, help="scale, for architectures whose weights do not record it")
    _models_dir_arg(add)
    add.set_defaults(handler=_add)

    ls = sub.add_parser("list", help="list users' models")
    _models_dir_arg(ls)
    ls.set_defaults(handler=_list)

    rm = sub.add_parser("remove", help="delete a user's model (card and weights)")
    rm.add_argument("name")
    _models_dir_arg(rm)
    rm.set_defaults(handler=_remove)


def _models_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", type=Path, default=None, help="models folder (default: SRSERVE_MODELS_DIR)")


def _models_dirs(args: argparse.Namespace) -> list[Path]:
    from srserve.config import CommonSettings

    configured = list(CommonSettings().models_dir)
    if args.models_dir is not None:
        return [args.models_dir, *[d for d in configured if d != args.models_dir]]
    if not configured:
        raise SystemExit("no models folder: pass --models-dir DIR or set SRSERVE_MODELS_DIR")
    return configured


def _add(args: argparse.Namespace) -> int:
    from model_store.user_models import UserModelError, add_model

    dirs = _models_dirs(args)
    try:
        card = add_model(args.file, models_dir=dirs[0], name=args.name, scale=args.scale, extra_dirs=dirs[1:])
    except UserModelError as exc:
        log.error("refused %s: %s", args.file, exc)
        print(f"refused: {exc}")
        return EXIT_REFUSED
    scales = ",".join(f"x{s}" for s in card.scales)
    print(f"added {card.name}: {card.architecture} {scales}, {card.params:,} parameters -> {dirs[0]}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from model_store.user_models import list_models

    rows = list_models(_models_dirs(args))
    if not rows:
        print("no user models")
        return EXIT_OK
    width = max(len(card.name) for card, _ in rows)
    for card, folder in rows:
        scales = ",".join(f"x{s}" for s in card.scales)
        print(f"{card.name:<{width}}  {card.architecture:<9} {scales:<9} {card.params:>11,}  {folder}")
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    from model_store.user_models import UserModelError, remove_model

    try:
        remove_model(args.name, _models_dirs(args)[0])
    except UserModelError as exc:
        print(f"refused: {exc}")
        return EXIT_REFUSED
    print(f"removed {args.name}")
    return EXIT_OK
