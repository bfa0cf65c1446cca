"""`DomainEvents`: which stops are lost guests (a QEMU that died, a crashed or self-shut
guest) and which the driver asked for (stop, destroy, migrate, a start that failed)."""

from __future__ import annotations

import pytest

libvirt = pytest.importorskip("libvirt", reason="libvirt-python: scripts/install-libvirt")

from ringfence.hypervisor.libvirt_events import DomainEvents  # noqa: E402


class Domain:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


def stopped(events: DomainEvents, vm: str, detail: int) -> None:
    events._lifecycle(None, Domain(vm), libvirt.VIR_DOMAIN_EVENT_STOPPED, detail, None)


def test_unasked_stops_are_lost_once_and_set_changed() -> None:
    events = DomainEvents()
    stopped(events, "a", libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)
    stopped(events, "b", libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)
    events._lifecycle(None, Domain("c"), libvirt.VIR_DOMAIN_EVENT_CRASHED, 0, None)
    assert events.changed.is_set()
    assert events.take_lost() == {"a": "its QEMU process died", "b": "the guest shut down",
                                  "c": "the guest crashed"}
    assert events.take_lost() == {}


def test_asked_and_migrated_stops_are_not_lost() -> None:
    events = DomainEvents()
    events.expect_stop("a")
    stopped(events, "a", libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    stopped(events, "m", libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)
    events._lifecycle(None, Domain("s"), libvirt.VIR_DOMAIN_EVENT_STARTED, 0, None)
    assert events.take_lost() == {}
    events.done_stopping("a")
    stopped(events, "a", libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)
    assert events.take_lost() == {"a": "its QEMU process died"}


def test_an_expired_expectation_no_longer_hides_a_crash() -> None:
    events = DomainEvents()
    events.expect_stop("a", within=-1.0)
    stopped(events, "a", libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED)
    assert events.take_lost() == {"a": "its QEMU process died"}


def test_completed_job_statistics_are_kept_per_domain() -> None:
    events = DomainEvents()
    events._job_completed(None, Domain("m"), {"downtime": 123}, None)
    assert events.completed("m") == {"downtime": 123}
    events.forget_completed("m")
    assert events.completed("m") is None
