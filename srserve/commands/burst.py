"""`srserve train-burst ...` and `srserve eval-burst ...`: burst SR training and evaluation tables.

Both forward their arguments to `model_store.burst.train_burst.main` and
`model_store.burst.evaluate_burst.main` (run `srserve train-burst --help` for the options), so the
module CLIs and the `srserve` commands cannot drift apart. torch is imported only by the handlers.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    # prefix_chars="+" and no -h: every option, --help included, is left for the module's own parser
    train = subparsers.add_parser("train-burst", add_help=False, prefix_chars="+",
                                  help="train a burst model (shift_pool, misr_gru) -> weights + model card")
    train.add_argument("args", nargs=argparse.REMAINDER)
    train.set_defaults(handler=_train)
    ev = subparsers.add_parser("eval-burst", add_help=False, prefix_chars="+",
                               help="burst SR tables on bursts synthesised from the benchmark sets")
    ev.add_argument("args", nargs=argparse.REMAINDER)
    ev.set_defaults(handler=_eval)


def _train(args: argparse.Namespace) -> int:
    from model_store.burst.train_burst import main

    return main(list(args.args))


def _eval(args: argparse.Namespace) -> int:
    from model_store.burst.evaluate_burst import main

    return main(list(args.args))
