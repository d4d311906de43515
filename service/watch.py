"""Long polling: `GET /v1/jobs/{id}?wait=S` answers as soon as the job stops running, not S later.

Workers publish a job's id (`jobspec.publish_job_event`) when it finishes, fails, is canceled or
goes back to its queue for a retry; the API publishes it when it cancels a queued job. Each API
process holds one pub/sub connection, read by a daemon thread (started by the first waiter), and
wakes the asyncio waiters registered for that id. A message can be missed (Redis restarting, a
worker killed outright): the waiter then just sleeps out its `wait` and reads the job again, so the
answer is never wrong, only late. Redis pub/sub channels span databases: a message about another
deployment's job wakes nobody here (ids are random), or one waiter that reads its job and sleeps on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

import redis

from srserve.jobspec import JOB_EVENTS_CHANNEL

log = logging.getLogger(__name__)


class JobWatcher:
    def __init__(self, connection: redis.Redis, channel: str = JOB_EVENTS_CHANNEL) -> None:
        self.connection = connection
        self.channel = channel
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()

    def register(self, job_id: str) -> asyncio.Event:
        """An event set when `job_id`'s state changes; call from the event loop, `unregister` after."""
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add((asyncio.get_running_loop(), event))
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="job-watcher", daemon=True)
                self._thread.start()
        return event

    def unregister(self, job_id: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(job_id)
            if waiters is None:
                return
            waiters.difference_update({w for w in waiters if w[1] is event})
            if not waiters:
                del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the listener is subscribed (tests: a publish before that would be missed)."""
        return self._subscribed.wait(timeout)

    def notify(self, job_id: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: its request is gone
                loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = self.connection.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self._subscribed.set()
                backoff = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        self.notify(data.decode() if isinstance(data, bytes) else str(data))
            except (redis.RedisError, OSError) as exc:
                self._subscribed.clear()
                log.warning("job watcher lost Redis (%s); waiters fall back to their timeout", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
