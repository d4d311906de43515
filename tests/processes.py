"""Child processes that die with the test session.

A pytest killed by SIGKILL (or by a CI timeout) runs no fixture teardown; an API or worker left behind
keeps serving and takes the next run's jobs from Redis (they then fail as `input_missing`). Linux's
parent-death signal closes that gap: each child is started through a small launcher that asks the
kernel for SIGTERM when the test process dies (prctl PR_SET_PDEATHSIG, kept across exec), then
execs the real command, so the service shuts down as it does on any SIGTERM. A launcher rather than
`preexec_fn`, which is unsafe while the test process runs threads (the engine tests do).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

# argv: parent pid, then the command. PR_SET_PDEATHSIG = 1, SIGTERM = 15. The signal is tied to the
# forking thread: every spawn in the tests happens on pytest's main thread.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"  # the test process died before the line above
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def popen_tied(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(args, **kwargs)`, the child terminated (SIGTERM) if this process dies first."""
    return subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(os.getpid()), *args], **kwargs)
