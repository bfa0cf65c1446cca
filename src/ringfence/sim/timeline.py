"""A value over simulated time, recorded as changes; looked up by time."""

from __future__ import annotations

from bisect import bisect_right
from typing import Generic, TypeVar

T = TypeVar("T")


class Timeline(Generic[T]):
    def __init__(self, initial: T) -> None:
        self.times: list[float] = [0.0]
        self.values: list[T] = [initial]

    def set(self, t: float, value: T) -> None:
        if self.values[-1] == value:
            return
        if self.times[-1] == t:
            # Several changes at one instant: the last one stands, but keep a zero-length
            # entry for the earlier ones only if they differ from what came before.
            self.values[-1] = value
            if len(self.values) > 1 and self.values[-2] == value:
                self.times.pop()
                self.values.pop()
            return
        self.times.append(t)
        self.values.append(value)

    def at(self, t: float) -> T:
        return self.values[bisect_right(self.times, t) - 1]

    def changes(self) -> list[tuple[float, T]]:
        return list(zip(self.times, self.values, strict=True))
