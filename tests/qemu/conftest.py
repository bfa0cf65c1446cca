"""Fixtures of the real-VM tests (marker `qemu`): a QEMU lab of two libvirt hosts, each its
own libvirtd and virtlockd in network and mount namespaces (`ringfence.guest.libvirtd`),
with tiny real guests (TCG: no KVM needed).

What the machine needs is installed by ``scripts/install-qemu`` (idempotent; a no-op once
done), which the lab fixture runs first. The tests skip, saying why, when the machine can not
run them: not root (namespaces, apt), libvirt-python missing, or the install failing (no
package mirror). Everything the lab starts is torn down afterwards even when a test fails,
and the teardown is checked: no namespace of this lab (prefix ``rfq-``) is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def skip_unless_able() -> None:
    """Skip (saying why) unless this machine can run QEMU guests; installs what they need."""
    if os.geteuid() != 0:
        pytest.skip("the QEMU tests need root (network and mount namespaces, apt-get): "
                    "run them as root, e.g. `sudo .venv/bin/python -m pytest -m qemu tests/qemu`")
    try:
        import libvirt  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"import libvirt failed ({exc}): install it with "
                    f"PYTHON=.venv/bin/python bash scripts/install-libvirt")
    done = subprocess.run(["bash", str(REPO / "scripts" / "install-qemu")],
                          env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        pytest.skip(f"scripts/install-qemu failed, so this machine can not run QEMU guests: "
                    f"{(done.stderr or done.stdout).strip()[-600:]}")


@pytest.fixture(scope="session")
def qemu_ready() -> None:
    skip_unless_able()


@pytest.fixture(scope="module")
def lab(qemu_ready: None) -> Iterator[Any]:
    from ringfence.guest.libvirtd import QemuLab

    qemu_lab = QemuLab(2)
    try:
        qemu_lab.start()
        yield qemu_lab
    finally:
        qemu_lab.close()
        assert qemu_lab.namespaces() == [], f"namespaces left: {qemu_lab.namespaces()}"
        assert qemu_lab.leftovers == []
        assert not qemu_lab.root.exists()
