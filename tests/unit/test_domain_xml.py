"""libvirt hosts find a VM's domain XML in the store; the first host that has the file
publishes it, so every host defines the VM alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.agent.runtime import domain_xml_source
from ringfence.config import ClusterConfig
from ringfence.hypervisor.base import HypervisorError
from ringfence.store.sqlite import SqliteStore


def config(xml_file: str | None) -> ClusterConfig:
    return ClusterConfig.model_validate({
        "networks": [{"name": "ring0", "role": "heartbeat"}],
        "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB"}],
        "vms": [{"name": "erp", "cpus": 1, "memory": "1GiB", "domain_xml_file": xml_file}],
    })


def test_the_first_copy_is_published_and_used_by_hosts_without_the_file(tmp_path: Path) -> None:
    xml = tmp_path / "erp.xml"
    xml.write_text("<domain type='test'><name>erp</name></domain>")
    with SqliteStore(str(tmp_path / "store.db")) as store:
        assert "<name>erp</name>" in domain_xml_source(config(str(xml)), store)("erp")
        xml.write_text("<domain>changed on one host only</domain>")
        elsewhere = domain_xml_source(config(str(tmp_path / "missing.xml")), store)
        assert "<name>erp</name>" in elsewhere("erp")


def test_no_xml_anywhere_is_a_hypervisor_error_naming_the_file(tmp_path: Path) -> None:
    with SqliteStore(str(tmp_path / "store.db")) as store:
        source = domain_xml_source(config(str(tmp_path / "nope.xml")), store)
        with pytest.raises(HypervisorError, match=r"nope\.xml"):
            source("erp")


def test_a_queued_reboot_target_means_the_host_reboots() -> None:
    from ringfence.agent.runtime import reboot_queued

    assert reboot_queued("1201 reboot.target start waiting\n1202 final.target start waiting\n")
    assert not reboot_queued("1301 poweroff.target start waiting\n")
    assert not reboot_queued("")
