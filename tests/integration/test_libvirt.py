"""`LibvirtHypervisor` against libvirt's built-in test driver (``test:///default``).

The test driver keeps domains in memory in this process: define, start, list, metadata,
shutdown and destroy behave as on a real host. It can not migrate ("p2p migration is not
supported"), so migration is tested for its failure path (the domain still runs here) and
for the request it would send (URI, flags), not for a real move between two hosts.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

try:
    import libvirt
except ImportError as exc:  # not installed, or installed without its C library
    pytest.skip(f"import libvirt failed ({exc}): libvirt-python is the optional extra "
                f"ringfence[libvirt]; install it with scripts/install-libvirt",
                allow_module_level=True)

from ringfence.hypervisor.base import HypervisorError, JobResult
from ringfence.hypervisor.libvirt import (
    METADATA_NS,
    MIGRATE_FLAGS,
    LibvirtHypervisor,
    migration_request,
    ssh_uri,
)

URI = "test:///default"
_names = itertools.count()


def domain_xml(vm: str) -> str:
    return (f"<domain type='test'><name>{vm}</name><memory unit='MiB'>64</memory>"
            f"<os><type>hvm</type></os></domain>")


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Unique domain names (test:///default is shared by the connections of one process);
    their domains are destroyed and undefined afterwards."""
    used: list[str] = []

    def fresh() -> str:
        name = f"rf-{os.getpid()}-{next(_names)}"
        used.append(name)
        return name

    yield [fresh() for _ in range(3)]
    connection = libvirt.open(URI)
    for name in used:
        try:
            domain = connection.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if domain.isActive():
            domain.destroy()
        domain.undefine()
    connection.close()


def live_xml(vm: str) -> str:
    connection = libvirt.open(URI)
    try:
        return str(connection.lookupByName(vm).XMLDesc(0))
    finally:
        connection.close()


def ok(job: Any) -> JobResult:
    """Wait for a hypervisor job; it must succeed."""
    result = job.wait(30)
    assert result is not None and result.ok, result
    return result  # type: ignore[no-any-return]


def failed(job: Any, match: str) -> JobResult:
    """Wait for a hypervisor job; it must fail, saying `match`."""
    result = job.wait(30)
    assert result is not None and not result.ok and re.search(match, result.detail), result
    return result  # type: ignore[no-any-return]


def test_define_start_list_token_stop(names: list[str]) -> None:
    vm = names[0]
    hv = LibvirtHypervisor(URI, domain_xml)
    assert vm not in hv.list_running()
    assert "test" not in hv.list_running()  # the driver's own domain runs, but is not ours
    ok(hv.start(vm, 41))
    assert hv.list_running()[vm] == 41
    ok(hv.start(vm, 41))  # idempotent
    xml = live_xml(vm)
    assert f'<ringfence:token xmlns:ringfence="{METADATA_NS}">41</ringfence:token>' in xml
    ok(hv.start(vm, 42))  # re-token a running domain
    assert hv.list_running()[vm] == 42
    assert ">42</ringfence:token>" in live_xml(vm)
    ok(hv.stop(vm, 42))  # asks the guest to shut down; the test driver's guest obeys at once
    assert vm not in hv.list_running()
    ok(hv.stop(vm, 42))  # not running: nothing to do
    ok(hv.start(vm, 43))  # defined already: started again, with the new token
    assert hv.list_running()[vm] == 43


def test_stop_destroys_after_the_grace(names: list[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    vm = names[0]
    hv = LibvirtHypervisor(URI, domain_xml, stop_grace=0.5)
    ok(hv.start(vm, 1))
    requests: list[str] = []

    def ignored_shutdown(domain: Any) -> int:
        # a guest that ignores the ACPI request (the test driver's guests always obey it)
        requests.append(domain.name())
        return 0

    monkeypatch.setattr(libvirt.virDomain, "shutdown", ignored_shutdown)
    job = hv.stop(vm, 1)
    assert job.result() is None  # a job: the grace runs in its own thread
    result = ok(job)
    assert requests == [vm]  # asked once, then waited out the grace
    assert "destroyed" in result.detail
    assert vm not in hv.list_running()


def test_destroy(names: list[str]) -> None:
    vm, other = names[0], names[1]
    hv = LibvirtHypervisor(URI, domain_xml)
    ok(hv.start(vm, 7))
    ok(hv.start(other, 8))
    hv.destroy(vm)
    running = hv.list_running()
    assert vm not in running and running[other] == 8
    hv.destroy(vm)  # not running: not an error
    hv.destroy(names[2])  # unknown to libvirt: not an error either


def test_start_errors_are_hypervisor_errors(names: list[str]) -> None:
    def no_xml(vm: str) -> str:
        raise FileNotFoundError(f"/etc/ringfence/vms/{vm}.xml")

    failed(LibvirtHypervisor(URI, no_xml).start(names[0], 1), "no domain XML")
    failed(LibvirtHypervisor(URI, lambda vm: domain_xml(names[1])).start(names[0], 1),
           "defines")
    failed(LibvirtHypervisor(URI, lambda vm: "<domain>broken").start(names[2], 1), ".")
    with pytest.raises(HypervisorError, match="can not connect"):
        LibvirtHypervisor("test:///nonexistent/file.xml", domain_xml).list_running()


def test_migration_failure_keeps_the_domain_here(names: list[str]) -> None:
    """The test driver can not migrate: what we can check is the failure semantics."""
    vm = names[0]
    hv = LibvirtHypervisor(URI, domain_xml, target_uri=lambda host: f"test:///{host}")
    ok(hv.start(vm, 5))
    failed(hv.migrate(vm, "hv2", 6), "still runs on this host")
    assert hv.list_running()[vm] == 6  # the new token was set before the attempt
    failed(hv.migrate(names[1], "hv2", 6), "not defined")
    ok(LibvirtHypervisor(URI, domain_xml).start(names[1], 1))
    LibvirtHypervisor(URI, domain_xml).destroy(names[1])
    failed(hv.migrate(names[1], "hv2", 6), "does not run")


def test_hung_call_is_bounded_and_blocks_further_calls() -> None:
    import threading

    release = threading.Event()
    hv = LibvirtHypervisor(URI, domain_xml, call_timeout=0.2)

    def hang() -> Any:
        release.wait(5)
        return 1

    with pytest.raises(HypervisorError, match="did not answer within"):
        hv._bounded("hang", hang)
    with pytest.raises(HypervisorError, match="libvirt hangs"):
        hv.list_running()
    release.set()
    assert hv._hung is not None
    hv._hung[0].join(5)
    assert isinstance(hv.list_running(), dict)  # the hung call returned: usable again


# ------------------------------------------------------------------ migration request


def test_migration_uri_and_flags() -> None:
    assert ssh_uri("hv2") == "qemu+ssh://hv2/system"
    uri, params, flags = migration_request("hv2")
    assert uri == "qemu+ssh://hv2/system" and params == {}
    assert flags == MIGRATE_FLAGS
    for flag in ("VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST",
                 "VIR_MIGRATE_UNDEFINE_SOURCE", "VIR_MIGRATE_ABORT_ON_ERROR"):
        assert flags & getattr(libvirt, flag)
    uri, params, _ = migration_request("hv3", lambda h: f"qemu+tls://{h}.mgmt/system", 500)
    assert uri == "qemu+tls://hv3.mgmt/system"
    assert params == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 500}
    for bad in ("", "a/b", "x y", "u@h"):
        with pytest.raises(ValueError):
            ssh_uri(bad)
