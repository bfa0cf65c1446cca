"""The host installer: `scripts/build-wheelhouse` builds the offline tarball, its `install.sh`
installs ringfence, its unit, directories and modes, and refuses what it must refuse.

Each install runs for real, as root, at the real paths (/opt, /etc, /usr/local, /var/lib, /run),
in a private mount namespace where each of those directories is an overlay whose upper layer
is a directory of the test: the machine's own directories are never written, and after the
namespace ends the upper layers hold exactly what install.sh wrote (so the test also proves it
wrote nothing else). A stand-in `systemctl` first in PATH, with /run/systemd/system present in
the namespace, records every call: install.sh may ask `is-active` and run `daemon-reload`,
never start, stop, enable or restart anything. Root only (marker `lab`).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from ringfence import __version__

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
OVERLAID = ("/opt", "/etc", "/usr/local", "/var/lib", "/run")
SYSTEMCTL = """#!/bin/bash
echo "$*" >> "$SYSTEMCTL_LOG"
case "$1" in
  is-active) [ "${FAKE_ACTIVE:-no}" = yes ] ;;
  daemon-reload) exit 0 ;;
  *) exit 1 ;;
esac
"""


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the installer test runs as root (mount namespaces and overlays)")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked wheelhouse tarball, built from this tree once for the module."""
    _needs_root()
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([str(ROOT / "scripts" / "build-wheelhouse"), "--out", str(out)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    tarball = Path(built.stdout.strip().splitlines()[-1])
    assert tarball == out / f"ringfence-{__version__}-wheelhouse.tar.gz", built.stdout
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(out)], check=True)
    return out / f"ringfence-{__version__}"


def in_host_root(tmp_path: Path, script: str, *, active: bool = False
                 ) -> subprocess.CompletedProcess[str]:
    """Run *script* (bash) as root in a private mount namespace whose OVERLAID directories
    write into `tmp_path/upper/NAME` (see the module docstring)."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "systemctl").write_text(SYSTEMCTL)
    (fake / "systemctl").chmod(0o755)
    mounts = []
    for directory in OVERLAID:
        name = directory.strip("/").replace("/", "_")
        for part in ("upper", "work"):
            (tmp_path / part / name).mkdir(parents=True, exist_ok=True)
        mounts.append(f"mount -t overlay overlay -o lowerdir={directory},"
                      f"upperdir={tmp_path}/upper/{name},workdir={tmp_path}/work/{name} "
                      f"{directory}")
    prelude = "set -e\nmount --make-rprivate /\n" + "\n".join(mounts) + \
        "\nmkdir -p /run/systemd/system\nset +e\n"
    env = {"PATH": f"{fake}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "SYSTEMCTL_LOG": str(tmp_path / "systemctl.log"), "HOME": str(tmp_path),
           "FAKE_ACTIVE": "yes" if active else "no", "LANG": "C.UTF-8"}
    return subprocess.run(["unshare", "--mount", "bash", "-c", prelude + script], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def upper(tmp_path: Path, directory: str) -> Path:
    return tmp_path / "upper" / directory.strip("/").replace("/", "_")


def written(tmp_path: Path) -> set[str]:
    """Every path install.sh created or changed, as the host sees it."""
    found: set[str] = set()
    for directory in OVERLAID:
        base = upper(tmp_path, directory)
        for path in base.rglob("*"):
            found.add(f"{directory}/{path.relative_to(base)}")
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_install_writes_the_release_unit_and_directories_and_it_runs(
        tmp_path: Path, wheelhouse: Path) -> None:
    result = in_host_root(tmp_path, f"""
{wheelhouse}/install.sh || exit $?
ringfence --version > {tmp_path}/version
cd {tmp_path} && ringfence init --name t --hosts hv1=10.0.0.1,hv2=10.0.0.2,hv3=10.0.0.3 \
    --ring1 hv1=10.0.1.1,hv2=10.0.1.2,hv3=10.0.1.3 --out /etc/ringfence/cluster.yaml \
    --key /etc/ringfence/cluster.key > /dev/null || exit 11
ringfence check /etc/ringfence/cluster.yaml > {tmp_path}/check; echo $? > {tmp_path}/check.rc
echo 'RINGFENCE_HOST=hv2' > /etc/default/ringfence
{wheelhouse}/install.sh > /dev/null || exit 12   # again: an upgrade to the same version
cp /etc/default/ringfence {tmp_path}/defaults
""")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "version").read_text().strip() == f"ringfence {__version__}"
    assert (tmp_path / "check.rc").read_text().strip() == "0", (tmp_path / "check").read_text()
    assert "Result: OK" in (tmp_path / "check").read_text()
    assert (tmp_path / "defaults").read_text() == "RINGFENCE_HOST=hv2\n", "kept as edited"

    opt, etc, var = (upper(tmp_path, d) for d in ("/opt", "/etc", "/var/lib"))
    local = upper(tmp_path, "/usr/local")
    assert os.readlink(opt / "ringfence" / "current") == f"releases/{__version__}"
    assert (opt / "ringfence" / "releases" / __version__ / "bin" / "ringfence").is_file()
    assert os.readlink(local / "bin" / "ringfence") == "/opt/ringfence/current/bin/ringfence"
    assert mode(etc / "ringfence") == 0o750 and mode(var / "ringfence") == 0o700
    assert mode(etc / "ringfence" / "cluster.key") == 0o600
    service = etc / "systemd" / "system" / "ringfence-agent.service"
    assert mode(service) == 0o644
    text = service.read_text()
    assert "Installed by ringfence's install.sh" in text
    assert "ExecStart=/usr/local/bin/ringfence agent" in text
    assert (ROOT / "packaging" / "ringfence-agent.service").read_text() in text
    calls = (tmp_path / "systemctl.log").read_text().split("\n")[:-1]
    assert set(calls) == {"is-active --quiet ringfence-agent.service", "daemon-reload"}, calls

    outside = {p for p in written(tmp_path)
               if not p.startswith(("/opt/ringfence", "/etc/ringfence"))}
    assert outside == {"/etc/systemd", "/etc/systemd/system",
                       "/etc/systemd/system/ringfence-agent.service", "/etc/default",
                       "/etc/default/ringfence", "/usr/local/bin", "/usr/local/bin/ringfence",
                       "/var/lib/ringfence", "/run/systemd", "/run/systemd/system"}, outside


@pytest.mark.parametrize(("setup", "active", "message"), [
    ("mkdir -p /etc/ringfence && head -c 32 /dev/urandom > /etc/ringfence/cluster.key && "
     "chmod 644 /etc/ringfence/cluster.key", False, "readable by users other than its owner"),
    ("mkdir -p /etc/systemd/system && echo '[Service]' > "
     "/etc/systemd/system/ringfence-agent.service", False, "was not installed by ringfence"),
    ("mkdir -p /usr/local/bin && echo '#!/bin/sh' > /usr/local/bin/ringfence", False,
     "is not ringfence's link"),
    ("true", True, "ringfence-agent is running"),
])
def test_install_refuses_before_changing_anything(tmp_path: Path, wheelhouse: Path, setup: str,
                                                  active: bool, message: str) -> None:
    result = in_host_root(tmp_path, f"{setup} || exit 10\n{wheelhouse}/install.sh", active=active)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert not (upper(tmp_path, "/opt") / "ringfence").exists(), "nothing installed"
    calls = (tmp_path / "systemctl.log").read_text().split("\n")[:-1] \
        if (tmp_path / "systemctl.log").exists() else []
    assert all(call.startswith("is-active") for call in calls), calls


def test_insecure_secrets_can_be_allowed_loudly(tmp_path: Path, wheelhouse: Path) -> None:
    result = in_host_root(tmp_path, "mkdir -p /etc/ringfence && echo pw > /etc/ringfence/ipmi-hv1"
                                    f" && chmod 640 /etc/ringfence/ipmi-hv1\n"
                                    f"{wheelhouse}/install.sh --allow-insecure-secrets")
    assert result.returncode == 0, result.stderr
    assert "WARNING: /etc/ringfence/ipmi-hv1 is readable" in result.stderr
    assert "chmod 600 /etc/ringfence/ipmi-hv1" in result.stderr
    assert json.dumps(mode(upper(tmp_path, "/etc") / "ringfence" / "ipmi-hv1")) == str(0o640)
