"""Guest checks for real VMs: does a moved VM answer? (`vms[].verify` in the cluster file.)

`tcp: "addr:port"`: a TCP connection is accepted within the check's timeout. `icmp: "addr"`:
one `ping` answered within the timeout. `guest_agent: true` is not built yet: such VMs (and VMs
without a `verify`) are not checked, and `configured` says so, so that nothing claims a
verification that did not happen.

A check never raises and never blocks a decision cycle for long: it runs in a background
thread and `check` returns None until it has finished, then its result.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

from ringfence.config import ClusterConfig, VerifyConfig


class NetworkGuestChecks:
    def __init__(self, config: ClusterConfig) -> None:
        self.checks: dict[str, VerifyConfig] = {
            vm.name: vm.verify for vm in config.vms
            if vm.verify is not None and (vm.verify.tcp or vm.verify.icmp)}
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
            answer = (tcp_answers(spec.tcp, spec.timeout) if spec.tcp
                      else icmp_answers(spec.icmp or "", spec.timeout))
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
