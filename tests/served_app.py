"""An API app served by a real uvicorn on a free loopback port, in a thread of the test process.

Real HTTP (as the standards ask) while a test can still reach into the app it serves
(`client.app.state`): to read its settings, or to break its blob store on purpose. It replaces
Starlette's TestClient, whose httpx transport Starlette 1.10 deprecates, and unlike it runs the
app's lifespan as a deployed API does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI


class AppClient(httpx.Client):
    """An httpx client bound to one served app, which it keeps as `.app`."""

    def __init__(self, app: FastAPI, base_url: str) -> None:
        super().__init__(base_url=base_url, timeout=60.0)
        self.app = app


@contextmanager
def served(app: FastAPI, start_timeout_s: float = 15.0) -> Iterator[AppClient]:
    """Serve `app` until the block ends; yields a client pointed at it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks the port: no race with other tests
    port = sock.getsockname()[1]
    # uvicorn installs signal handlers only in the main thread, so pytest's own stay in place
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.01)
    client = AppClient(app, f"http://127.0.0.1:{port}")
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(start_timeout_s)
        sock.close()
