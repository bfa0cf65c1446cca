"""Retrying store calls: `Retry`, shaped like Kazoo's ``KazooRetry``.

A `Retry` calls a function again while it raises `StoreUnavailable`, sleeping between tries with
exponential backoff and jitter, and gives up after ``max_tries`` calls or when the next sleep
would end past ``deadline`` seconds after the first call. Any other exception — and any result,
including a falsy one such as a lost compare-and-set — passes straight through: only "the store
could not answer" is worth asking again.

Giving up raises `RetryFailed`, a `StoreUnavailable` (so every caller that handles an
unavailable store handles it unchanged) chained to the last failure.

Who uses it: tools that wait for a store to come up before they start (`etcd_local`, which
waits for a freshly started etcd member to answer). The agent's cycles never do: a cycle never
sleeps, each store call there carries its own deadline (`Timing.effective_store_timeout`,
derived from the lease), and a call that failed is simply made again by the next cycle, whose
decisions are taken afresh from what the store then says. Tests inject ``sleep`` and ``clock``
(and ``rng`` for the jitter) to run a `Retry` in virtual time. Only a call whose repetition is
harmless should be retried: reads, keepalives, revokes, and transactions whose compares make a
repeated write lose (see the `Store` protocol: a call that raised may have been applied).

Differences from Kazoo, on purpose: ``max_tries`` counts calls of the function (Kazoo counts
retries after the first call), ``None`` means unlimited (Kazoo: -1), and the jitter source is
injectable. It is hand-written because Kazoo's class is bound to ZooKeeper's exceptions and to
the global ``random`` module.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from ringfence.store.base import StoreUnavailable

__all__ = ["Retry", "RetryFailed"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class RetryFailed(StoreUnavailable):
    """A retried store call gave up; ``__cause__`` is the last `StoreUnavailable`."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class Retry:
    """Retry a callable while it raises `StoreUnavailable`.

    - `max_tries`: calls of the function in all (at least 1); None: unlimited.
    - `deadline`: seconds after the first call past which no further sleep may end; None: none.
      A running call is never interrupted: bound each call with the store's own timeout.
    - `delay`: the first sleep; each next one is the previous times `backoff`, at most
      `max_delay`.
    - `max_jitter`: each sleep is multiplied by a factor drawn uniformly from
      ``[1 - max_jitter, 1 + max_jitter]`` (0: no jitter), so that many hosts that lost the
      store at once do not retry in lockstep.
    - `sleep`, `clock`, `rng`: injectable for virtual time and reproducible jitter.

    A `Retry` holds no state between calls; `copy()` gives an independent one with the same
    settings (Kazoo's idiom for handing a policy to another component).
    """

    def __init__(
        self,
        max_tries: int | None = 3,
        *,
        deadline: float | None = None,
        delay: float = 0.1,
        backoff: float = 2.0,
        max_delay: float = 5.0,
        max_jitter: float = 0.4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if max_tries is not None and max_tries < 1:
            raise ValueError(f"max_tries must be at least 1 (or None), got {max_tries}")
        if deadline is not None and deadline < 0:
            raise ValueError(f"deadline must not be negative, got {deadline}")
        if delay < 0 or max_delay < 0:
            raise ValueError("delay and max_delay must not be negative")
        if backoff < 1:
            raise ValueError(f"backoff must be at least 1, got {backoff}")
        if not 0 <= max_jitter < 1:
            raise ValueError(f"max_jitter must be in [0, 1), got {max_jitter}")
        self.max_tries = max_tries
        self.deadline = deadline
        self.delay = delay
        self.backoff = backoff
        self.max_delay = max_delay
        self.max_jitter = max_jitter
        self.sleep = sleep
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()

    def copy(self) -> Retry:
        """An independent `Retry` with the same settings (and the same sleep, clock and rng)."""
        return Retry(
            self.max_tries,
            deadline=self.deadline,
            delay=self.delay,
            backoff=self.backoff,
            max_delay=self.max_delay,
            max_jitter=self.max_jitter,
            sleep=self.sleep,
            clock=self.clock,
            rng=self.rng,
        )

    def __call__(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Call ``fn(*args, **kwargs)`` until it returns or raises something other than
        `StoreUnavailable`; raise `RetryFailed` when tries or time run out."""
        stop = None if self.deadline is None else self.clock() + self.deadline
        wait = self.delay
        attempts = 0
        while True:
            attempts += 1
            try:
                return fn(*args, **kwargs)
            except StoreUnavailable as exc:
                if self.max_tries is not None and attempts >= self.max_tries:
                    raise RetryFailed(
                        f"store unavailable after {attempts} tries: {exc}", attempts
                    ) from exc
                pause = min(wait, self.max_delay)
                if self.max_jitter:
                    pause *= self.rng.uniform(1.0 - self.max_jitter, 1.0 + self.max_jitter)
                if stop is not None and self.clock() + pause > stop:
                    raise RetryFailed(
                        f"store unavailable for {self.deadline:g} s ({attempts} tries): {exc}",
                        attempts,
                    ) from exc
                self.sleep(pause)
                wait = min(wait * self.backoff, self.max_delay)
