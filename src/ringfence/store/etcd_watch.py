"""Following etcd's revision through a watch stream, so that an idle agent need not ask for it
at every decision cycle, and a busy one hears of another host's write at once.

Why: the decision cycle asks the store's revision at every cycle (`Agent.revision`) to skip
re-reading an unchanged store. Five linearizable reads a second per host were most of an idle
agent's CPU time (issue 17: each is an HTTP round trip to etcd), and a record another host
wrote (a VM recovered here) still waited for the next cycle. One
watch stream (``/v3/watch`` on the JSON gateway, the whole keyspace) tells both: its `seen`
revision rises with every write anyone makes, and `on_change` wakes the decision cycle when a
key the cycle reads changed (`WATCHED`; not the journal's copy, which changes all the time).

What it promises, and what it does not: `seen` is a hint, never a proof. A stream can lag or
stall silently (a member cut off without a reset); the agent therefore still reads the
revision linearizably at least every `Agent.REVISION_REFRESH`, and on every cycle while the
watch is not connected (`seen` is None). Nothing is decided on what the watch says: it only
says when to read. A stream that delivered nothing for `idle` seconds is ended and opened
again (etcd sends nothing on an idle watch, and a dead peer is not always told), so a stalled
stream costs at most that long of per-cycle reads' worth of latency.

Failure semantics: never raises to its caller. Each stream is opened on the endpoints in
order (the host's own member first, as the store's), with the store's TLS, authentication and
``hasleader`` metadata (a member that loses its leader cancels the watch: `seen` goes None).
Failures are retried with a backoff up to `MAX_BACKOFF`. `close` ends the stream and the
thread.

Why hand-written: etcd3gw's `Watcher` decodes every event and runs callbacks in a thread
pool, but does not expose the response headers' revision, which is all this needs; the
stream itself is one streaming POST on a connection of its own (`EtcdStore.open_stream`, the
store's own HTTP transport, `store.etcd_http`).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringfence.store.etcd import EtcdStore
    from ringfence.store.etcd_http import GatewayStream

__all__ = ["MAX_BACKOFF", "WATCHED", "EtcdWatch"]

log = logging.getLogger(__name__)

WATCHED = ("hosts/", "vms/", "requests/", "manager")  # what the decision cycle reads
MAX_BACKOFF = 2.0


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdWatch:
    """One watch stream over the store's whole keyspace, in a thread of its own.

    `store`: the `EtcdStore` to follow (its endpoints, TLS and credentials are used; its own
    connections are not: the stream has sessions of its own). `on_change`: called, from the
    watch's thread (it must not block), when a key in `WATCHED` changed. `idle`: seconds
    without a message after which the stream is opened again."""

    def __init__(self, store: EtcdStore, on_change: Callable[[], None], *,
                 idle: float = 5.0) -> None:
        self._store = store.clone()  # connections of its own: never the cycles' store lock
        self._on_change = on_change
        self._idle = idle
        self._seen: int | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._response: GatewayStream | None = None
        self.streams = 0  # streams opened so far (tests, `ringfence status`)
        self._thread = threading.Thread(target=self._run, name="ringfence-store-watch",
                                        daemon=True)

    def start(self) -> EtcdWatch:
        self._thread.start()
        return self

    def seen(self) -> int | None:
        """The newest revision the current stream has told of (its creation, or a change);
        None while no stream is open."""
        with self._lock:
            return self._seen

    def close(self) -> None:
        self._halt.set()
        with self._lock:
            response, self._seen = self._response, None
        if response is not None:
            with contextlib.suppress(Exception):
                response.interrupt()  # unblocks the thread's read; the thread closes it
        self._thread.join(timeout=self._idle + 2.0)
        self._store.close()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        backoff = 0.1
        index = 0
        while not self._halt.is_set():
            try:
                self._follow(index)
                backoff = 0.1  # the stream ran and ended normally (idle, or cancelled)
            except Exception as exc:  # any failure: another endpoint, after a pause
                log.debug("store watch on %s: %s", self._store.endpoints[index], exc)
                index = (index + 1) % len(self._store.endpoints)
                self._halt.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
            finally:
                with self._lock:
                    self._seen, self._response = None, None

    def _follow(self, index: int) -> None:
        payload = {"create_request": {"key": _b64("\0"), "range_end": _b64("\0")}}
        response = self._store.open_stream(index, "watch", payload, idle=self._idle)
        with self._lock:
            self._response = response
        try:
            if self._halt.is_set():
                return
            self.streams += 1
            self._read(response)
        finally:
            response.close()

    def _read(self, response: GatewayStream) -> None:
        try:
            for line in response.lines():
                if self._halt.is_set():
                    return
                self._message(json.loads(line))
        except (OSError, http.client.HTTPException):
            if self._seen is None:
                raise  # it never even said it was created: a failure, try another member
            # Idle for `idle` seconds (or cut): open it again, on the same member.

    def _message(self, message: dict[str, Any]) -> None:
        result = message.get("result")
        if not isinstance(result, dict):
            raise ValueError(f"watch stream error: {str(message)[:200]}")
        if result.get("canceled"):
            raise ValueError(f"watch cancelled: {result.get('cancel_reason', '')[:200]}")
        revision = int(result.get("header", {}).get("revision", 0))
        with self._lock:
            self._seen = max(self._seen or 0, revision)
        keys = [base64.b64decode(event.get("kv", {}).get("key", "")).decode(errors="replace")
                for event in result.get("events", [])]
        if any(key.startswith(WATCHED) for key in keys):
            self._on_change()
