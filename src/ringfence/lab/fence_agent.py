"""The lab's power fence agent, speaking the ClusterLabs stdin protocol.

    action=off|on|reboot|status|monitor|list|metadata   plug=HOST   lab=LABDIR
    [delay=SECONDS]   [via=NETWORK]   [hang=SECONDS]

It is the power controller of a namespace host, reached out of band (through ``/proc``, not
through any lab network, so partitions do not stop it). ``off`` records the host as off
(``LABDIR/power/HOST.off``) and then SIGKILLs every process whose network namespace is the
host's (inode in ``LABDIR/netns/HOST.ino``) until none is left: the agent, its watchdog
supervisor, its VMs, its etcd member, whatever else runs there. ``on`` asks the lab to boot
the host (``LABDIR/power/HOST.on``; the lab boots it after the scenario's boot time).
``reboot`` is both. ``status`` exits 2 (off) once the host is recorded off and nothing of it is
left, else 0 (on). ``delay`` waits before acting (a slow controller). ``via`` names a network
the controller is reached on: the fence fails (exit 1) when the fencing host has no carrier on
it, as in the simulator. ``hang`` (the scenario's ``fencing.<host>.hang``) makes every action
answer only after that long, and then act, as a wedged controller does: the caller's timeout is
what stops it.

Only the standard library is imported: its start-up time is part of every failover.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ringfence.lab.netns import kill_all, pids_in

OFF, ON, FAILED = 2, 0, 1


def _params(text: str) -> dict[str, str]:
    params = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            params[name.strip()] = value.strip()
    return params


def _carrier(network: str, lab: Path) -> bool:
    """Does this process's own namespace (the fencing host's) have carrier on `network`?
    The lab writes each node's MAC per network to ``LABDIR/netns/<node>.macs``."""
    wanted = set()
    for path in (lab / "netns").glob("*.macs"):
        for line in path.read_text().splitlines():
            name, _, mac = line.partition(" ")
            if name == network:
                wanted.add(mac.strip().lower())
    for entry in Path("/sys/class/net").iterdir():
        try:
            mac = (entry / "address").read_text().strip().lower()
        except OSError:
            continue
        if mac in wanted:
            try:
                return (entry / "carrier").read_text().strip() == "1"
            except OSError:
                return False
    return False


def main(stdin: str) -> int:
    params = _params(stdin)
    action, host, lab = params.get("action", "reboot"), params.get("plug", ""), params.get("lab")
    if action == "metadata":
        sys.stdout.write('<?xml version="1.0" ?>\n<resource-agent name="fence_lab" '
                         'shortdesc="ringfence lab power controller"/>\n')
        return 0
    if action in ("monitor", "validate-all"):
        return 0
    if not host or not lab or not (Path(lab) / "netns" / f"{host}.ino").is_file():
        sys.stderr.write("fence_lab: plug=HOST and lab=DIR of a running lab are required\n")
        return FAILED
    root = Path(lab)
    if action == "list":
        sys.stdout.write(f"{host},{host}\n")
        return 0
    inode = int((root / "netns" / f"{host}.ino").read_text().split()[0])
    off_marker, on_request = root / "power" / f"{host}.off", root / "power" / f"{host}.on"
    time.sleep(float(params.get("hang", "0") or 0))
    if action == "status":
        return OFF if off_marker.exists() and not pids_in(inode) else ON
    if action not in ("off", "on", "reboot"):
        sys.stderr.write(f"fence_lab: unknown action {action}\n")
        return FAILED
    via = params.get("via")
    if via and not _carrier(via, root):
        sys.stderr.write(f"fence_lab: no carrier on {via}: the power controller of {host} "
                         f"can not be reached\n")
        return FAILED
    if action in ("off", "reboot"):
        time.sleep(float(params.get("delay", "0") or 0))
        off_marker.write_text(f"{time.time():.3f} fenced\n")
        try:
            kill_all(inode)
        except RuntimeError as exc:
            sys.stderr.write(f"fence_lab: {exc}\n")
            return FAILED
    if action in ("on", "reboot"):
        on_request.write_text(f"{time.time():.3f} power on\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.stdin.read()))
