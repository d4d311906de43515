"""The tests' child processes end with the test process, even when it is killed without teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.processes import popen_tied


def test_a_tied_child_is_terminated_when_its_parent_is_killed() -> None:
    # a stand-in for pytest: starts a tied child, prints its pid, then waits to be SIGKILLed
    parent_code = (
        "import sys, time; from tests.processes import popen_tied;"
        "child = popen_tied([sys.executable, '-c', 'import time; time.sleep(120)']);"
        "print(child.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 30  # until the launcher has exec'd the command: same pid, new command line
        while "time.sleep(120)" not in " ".join(child.cmdline()):
            assert time.monotonic() < deadline, child.cmdline()
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        gone, alive = psutil.wait_procs([child], timeout=10)
        assert gone and not alive, "the child outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()


def test_a_tied_child_runs_and_exits_as_usual() -> None:
    proc = popen_tied([sys.executable, "-c", "import sys; print('ok'); sys.exit(3)"], stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert (out.strip(), proc.returncode) == (b"ok", 3)
