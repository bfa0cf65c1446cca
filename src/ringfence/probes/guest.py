"""Guest checks for real VMs: does a moved VM answer? (`vms[].verify` in the cluster file.)

`tcp: "addr:port"`: a TCP connection is accepted within the check's timeout. `icmp: "addr"`:
one `ping` answered within the timeout. `guest_agent: true`: QEMU's guest agent in the guest
answers ``guest-ping`` within the timeout (`LibvirtGuestAgent`, through libvirt's
``virDomainQemuAgentCommand``; the domain needs the ``org.qemu.guest_agent.0`` virtio channel
and the guest ``qemu-ga``, as ringfence's own guest image has). A guest-agent check needs the
libvirt hypervisor: elsewhere such VMs, like VMs without a `verify`, are not checked, and
`configured` says so, so that nothing claims a verification that did not happen.

A check never raises and never blocks a decision cycle for long: it runs in a background
thread and `check` returns None until it has finished, then its result.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from ringfence.config import ClusterConfig, VerifyConfig

AgentPing = Callable[[str, float], bool]  # (vm, timeout) -> did its guest agent answer?


class NetworkGuestChecks:
    """`GuestChecks` for libvirt VMs: each VM's `verify` (see the module). `agent`: how to
    ask a VM's guest agent (None: `guest_agent` checks are not configured)."""

    def __init__(self, config: ClusterConfig, agent: AgentPing | None = None) -> None:
        self.agent = agent
        self.checks: dict[str, VerifyConfig] = {
            vm.name: vm.verify for vm in config.vms
            if vm.verify is not None
            and (vm.verify.tcp or vm.verify.icmp or (vm.verify.guest_agent and agent))}
        self.results: dict[str, bool] = {}
        self.running: set[str] = set()
        self.lock = threading.Lock()

    def configured(self, vm: str) -> bool:
        return vm in self.checks

    def check(self, vm: str) -> bool | None:
        spec = self.checks.get(vm)
        if spec is None:
            return None
        with self.lock:
            if vm in self.results:
                return self.results.pop(vm)
            if vm in self.running:
                return None
            self.running.add(vm)
        threading.Thread(target=self._run, args=(vm, spec), daemon=True,
                         name=f"verify-{vm}").start()
        return None

    def _run(self, vm: str, spec: VerifyConfig) -> None:
        try:
            if spec.guest_agent and self.agent is not None:
                answer = self.agent(vm, spec.timeout)
            elif spec.tcp:
                answer = tcp_answers(spec.tcp, spec.timeout)
            else:
                answer = icmp_answers(spec.icmp or "", spec.timeout)
        except Exception:  # a check that crashes did not see the VM answer
            answer = False
        with self.lock:
            self.running.discard(vm)
            self.results[vm] = answer


def tcp_answers(target: str, timeout: float) -> bool:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def icmp_answers(address: str, timeout: float) -> bool:
    ping = shutil.which("ping")
    if ping is None:
        return False
    try:
        result = subprocess.run([ping, "-c", "1", "-W", str(max(1, int(timeout))), address],
                                capture_output=True, timeout=timeout + 2, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


class LibvirtGuestAgent:
    """Ask a libvirt domain's QEMU guest agent for ``guest-ping`` (libvirt-python's
    ``libvirt_qemu.qemuAgentCommand``), over a libvirt connection of its own to `uri`: a
    guest agent that does not answer holds this connection for up to its timeout, never the
    driver's, which the decision cycle uses. Opened on first use and again after an error.

    `answers` never raises: False when the domain does not run here, has no guest agent
    channel, the agent is silent or answers anything but ``{"return": {}}``, or libvirt can
    not be reached. libvirt bounds the agent command by its own timeout (whole seconds,
    rounded up)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.lock = threading.Lock()
        self.connection: Any = None

    def _conn(self) -> Any:
        import libvirt

        with self.lock:
            if self.connection is None:
                self.connection = libvirt.open(self.uri)
            return self.connection

    def answers(self, vm: str, timeout: float) -> bool:
        try:
            import libvirt
            import libvirt_qemu
        except ImportError:
            return False
        try:
            domain = self._conn().lookupByName(vm)
            if not domain.isActive():
                return False
            reply = libvirt_qemu.qemuAgentCommand(domain, json.dumps({"execute": "guest-ping"}),
                                                  max(1, math.ceil(timeout)), 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN,
                                            libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                                            libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
                self.close()  # the connection may be what failed: open a new one next time
            return False
        try:
            return bool(json.loads(reply) == {"return": {}})
        except (TypeError, ValueError):
            return False

    def close(self) -> None:
        with self.lock:
            connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing to close
                connection.close()
