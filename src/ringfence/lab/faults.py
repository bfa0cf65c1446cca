"""The lab's fault table: what each scenario `do:` does for real, keyed by name.

`refusals` decides, before anything starts, which scenarios the lab can not replay and says
why (exit 2, naming the fault): a kind without an entry in `FAULTS`, or one that the lab can
do but whose outcome here would not mean what it means in the simulator (see `REFUSED`).

Each handler gets the running lab (`FaultContext`) and the event, applies it at once and
returns; anything that takes time (a link flap, a stall, a clean stop) is scheduled on the lab's
loop or runs in a thread of its own. Names in an event were checked by the scenario schema.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringfence.lab.hosts import Hosts
from ringfence.lab.paths import LabPaths
from ringfence.lab.records import LabRecords
from ringfence.lab.topology import Topology
from ringfence.sim.scenario import Event, Scenario


@dataclass
class FaultContext:
    scenario: Scenario
    topology: Topology
    hosts: Hosts
    records: LabRecords
    paths: LabPaths
    schedule: Callable[[float, Callable[[], None]], None]
    storage_mounts: set[Path] = field(default_factory=set)
    operators: list[subprocess.Popen[bytes]] = field(default_factory=list)


Handler = Callable[[FaultContext, Event], None]

OPERATOR = "operator"  # the name the simulator's operator actions carry


def _field(event: Event, name: str) -> Any:
    """A field of an event kind the schema may not know yet (`agent_stall`'s `for`)."""
    for key in (name, f"{name}_"):
        value = getattr(event, key, None)
        if value is not None:
            return value
    extra = getattr(event, "model_extra", None) or {}
    return extra.get(name)


# ---------------------------------------------------------------------- power
def power_off(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    if lab.records.power_at(event.host) != "off":
        lab.hosts.power_off(event.host, "power_off")


def power_on(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    lab.hosts.power_on(event.host)


def reboot(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    lab.hosts.clean_stop(event.host, reboot=True)


def shutdown(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    lab.hosts.clean_stop(event.host, reboot=False)


def hang(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    lab.hosts.hang(event.host, frozen=event.watchdog == "frozen")


def resume(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    lab.hosts.resume(event.host)


def agent_stall(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    lab.hosts.stall_agent(event.host, float(_field(event, "for") or 0.0))


# ---------------------------------------------------------------------- links
def _networks(lab: FaultContext, event: Event) -> list[str]:
    assert event.host is not None
    nics = lab.topology.nodes[event.host].nics
    if event.network in (None, "all"):
        return list(nics)
    return [event.network] if event.network in nics else []


def link_down(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    for network in _networks(lab, event):
        lab.topology.set_cable(event.host, network, False)


def link_up(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    for network in _networks(lab, event):
        lab.topology.set_cable(event.host, network, True)


def link_flap(lab: FaultContext, event: Event) -> None:
    """`count` drops and returns of carrier spread over one second, as in the simulator."""
    host, count = event.host, event.count or 1
    assert host is not None
    networks = _networks(lab, event)
    step = 1.0 / (2 * count)

    def set_cable(up: bool) -> None:
        for network in networks:
            lab.topology.set_cable(host, network, up)

    for i in range(count):
        lab.schedule(2 * i * step, lambda: set_cable(False))
        lab.schedule((2 * i + 1) * step, lambda: set_cable(True))


def partition(lab: FaultContext, event: Event) -> None:
    lab.topology.partition(event.groups or [], event.networks)


def heal(lab: FaultContext, event: Event) -> None:
    lab.topology.heal(event.networks)


def witness_down(lab: FaultContext, event: Event) -> None:
    assert event.witness is not None
    lab.hosts.witness_down(event.witness)


def witness_up(lab: FaultContext, event: Event) -> None:
    assert event.witness is not None
    lab.hosts.witness_up(event.witness)


def rename_nics(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    lab.hosts.hosts[event.host].rename_pending = True


# ---------------------------------------------------------------------- storage, memory
def _datastores(lab: FaultContext, event: Event) -> list[Path]:
    assert event.host is not None
    root = lab.paths.host(event.host) / "datastores"
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if event.datastore is not None:
        names = [n for n in names if n == event.datastore]
    return [root / name for name in names]


def storage_fail(lab: FaultContext, event: Event) -> None:
    """A read-only filesystem mounted over the host's datastore directory: its write probe
    fails with EROFS. The mount propagates into the host's mount namespace (the lab's
    directory is a shared mount), and survives the host's reboots until `storage_ok`."""
    from ringfence.lab import netns

    for path in _datastores(lab, event):
        if path not in lab.storage_mounts:
            netns.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "ringfence-lab-ro",
                       str(path)])
            lab.storage_mounts.add(path)


def storage_ok(lab: FaultContext, event: Event) -> None:
    from ringfence.lab import netns

    for path in _datastores(lab, event):
        if path in lab.storage_mounts:
            netns.run(["umount", str(path)])
            lab.storage_mounts.discard(path)


def memory_errors(lab: FaultContext, event: Event) -> None:
    assert event.host is not None
    counter = lab.paths.edac(event.host) / "mc0" / "ce_count"
    before = int(counter.read_text().strip() or 0)
    counter.write_text(f"{before + (event.count or 1)}\n")


# ---------------------------------------------------------------------- VMs, operators
def vm_crash(lab: FaultContext, event: Event) -> None:
    """SIGKILL of the VM's process on every host that is up (a hung host's is frozen)."""
    from ringfence.lab import netns

    assert event.vm is not None
    for host in lab.hosts.hosts:
        if lab.records.power_at(host) == "up":
            netns.signal_pids(lab.hosts.vm_pids(host, event.vm), 9)


def force_start(lab: FaultContext, event: Event) -> None:
    """`ringfence vm force-start`, run by the operator on that host (inside its namespace,
    with its cluster file and its agent's state directory), in the background."""
    host, vm = event.host, event.vm
    assert host is not None and vm is not None and event.operator is not None
    if lab.records.power_at(host) != "up":
        lab.records.journal("force_start_refused", host=host, vm=vm, operator=event.operator,
                            reason=f"the host is {lab.records.power_at(host)}")
        return
    words = ["vm", "force-start", vm, "--host", host, "--operator", event.operator,
             "--state-dir", str(lab.paths.state(host))]
    if event.confirm_down:
        words += ["--confirm-down", *event.confirm_down]
    _operator_command(lab, host, words)


def maintenance(lab: FaultContext, event: Event) -> None:
    """`ringfence host maintenance HOST on|off`, as the simulator's operator does it."""
    assert event.host is not None
    _from_any_host(lab, f"maintenance {'on' if event.on else 'off'} {event.host}",
                   ["host", "maintenance", event.host, "on" if event.on else "off"])


def migrate(lab: FaultContext, event: Event) -> None:
    """`ringfence vm migrate VM --to HOST`, as the simulator's operator does it."""
    assert event.vm is not None and event.to is not None
    _from_any_host(lab, f"migrate {event.vm}", ["vm", "migrate", event.vm, "--to", event.to])


def _from_any_host(lab: FaultContext, what: str, words: list[str]) -> None:
    """An operator command that goes to the store: run on the first host that is up, as an
    operator would log in wherever they can (the simulator writes through any host)."""
    up = [host for host in lab.hosts.hosts if lab.records.power_at(host) == "up"]
    if not up:
        lab.records.journal("operator_refused", operator=OPERATOR,
                            reason=f"{what}: no host is up to run it on")
        return
    _operator_command(lab, up[0], [*words, "--operator", OPERATOR])


def _operator_command(lab: FaultContext, host: str, words: list[str]) -> None:
    """``ringfence WORDS`` inside `host`'s namespace with its cluster file, in the background;
    its output goes to ``operators.log``."""
    argv = ["ip", "netns", "exec", lab.hosts.hosts[host].ns, sys.executable, "-m",
            "ringfence.cli", *words, "--config", str(lab.paths.config(host))]
    log = lab.paths.root / "operators.log"
    with log.open("ab") as out:
        out.write(f"--- {' '.join(argv)}\n".encode())
        out.flush()
        lab.operators.append(subprocess.Popen(argv, stdout=out, stderr=out,
                                              stdin=subprocess.DEVNULL,
                                              start_new_session=True))


FAULTS: dict[str, Handler] = {
    "power_off": power_off,
    "power_on": power_on,
    "reboot": reboot,
    "shutdown": shutdown,
    "hang": hang,
    "resume": resume,
    "agent_stall": agent_stall,
    "link_down": link_down,
    "link_up": link_up,
    "link_flap": link_flap,
    "partition": partition,
    "heal": heal,
    "witness_down": witness_down,
    "witness_up": witness_up,
    "rename_nics": rename_nics,
    "storage_fail": storage_fail,
    "storage_ok": storage_ok,
    "memory_errors": memory_errors,
    "vm_crash": vm_crash,
    "force_start": force_start,
    "maintenance": maintenance,
    "migrate": migrate,
}
"""Every fault the lab does for real."""

REFUSED: dict[str, str] = {
    "slow_calls": "slowing one host's store, hypervisor or fence calls needs a hook inside "
                  "the agent's process, which the lab does not have",
    "lost_answers": "losing the store's answers after applying a write needs a hook inside the "
                    "agent's store client, which the lab does not have",
    "store_wipe": "wiping the store is not built in the lab yet",
}


def refusals(scenario: Scenario) -> list[str]:
    """Why the lab can not replay this scenario (empty: it can), each naming the fault."""
    found: list[str] = []
    for index, event in enumerate(scenario.events):
        if event.do not in FAULTS:
            why = REFUSED.get(event.do, "the lab has no way to do it")
            found.append(f"events[{index}]: do: {event.do}: {why}")
    if scenario.sim.clock_drift_ppm:
        found.append("sim.clock_drift_ppm: the lab's hosts share this machine's clock")
    for index, expectation in enumerate(scenario.expect):
        if expectation.route is not None or expectation.delivered is not None:
            found.append(f"expect[{index}]: an alert's route and delivery are judged by the "
                         f"simulator's model of which route reaches its receiver; the lab runs "
                         f"no receivers at the routes' addresses")
            break
    return found
