"""The one `srserve` command. Each subcommand lives in `srserve/commands/<name>.py` exposing
`register(subparsers)`; heavy imports (torch, uvicorn) happen inside the handlers, so
`srserve --help` stays fast and the API process never imports torch."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Explicit list: a missing module is a bug, not something to skip silently.
COMMAND_MODULES: tuple[str, ...] = (
    "srserve.commands.serve",  # serve, api, worker
    "srserve.commands.upscale",  # upscale files through a running API (the client CLI)
    "srserve.commands.train",  # train a model zoo network -> weights + model card
    "srserve.commands.eval",  # PSNR/SSIM of a model on LR/HR pairs
    "srserve.commands.compare",  # figure: crops of several models' outputs beside the ground truth
    "srserve.commands.bench",  # benchmarks -> bench/results/
    "srserve.commands.burst",  # train-burst, eval-burst: multi-frame SR (model_store.burst)
    "srserve.commands.train_gan",  # train-gan: SRResNet -> SRGAN adversarial fine-tuning
    "srserve.commands.models",  # models add|list|remove: users' own checkpoints
    "srserve.commands.keys",  # keys create|list|revoke: API keys (hashed in Redis)
)

# What a wrong argument value raises (unknown model or architecture, missing data folder, a crop that
# does not fit): one line and argparse's exit status 2 instead of a traceback, which
# `--log-level DEBUG` still shows.
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, LookupError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srserve", description="Image and burst super-resolution service")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from srserve.logging_setup import configure_logging

    configure_logging(args.log_level)
    from model_store.card import UnknownModelError  # pydantic only: no torch

    try:
        result = args.handler(args)
    except USER_ERRORS as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, UnknownModelError):
            message += f"; valid: {', '.join(exc.valid)}"
        sys.stderr.write(f"srserve {args.command}: error: {message} (--log-level DEBUG shows the traceback)\n")
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
