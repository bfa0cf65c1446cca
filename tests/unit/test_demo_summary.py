"""The demo's summary is judged from the VMs' own writes: a VM runs at the end only if it wrote
in the last second of the run; otherwise it has no `host_after` and is down until the end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ringfence.demo import Demo, DemoOptions, Fault


def fabricated_demo(tmp_path: Path) -> tuple[Demo, float]:
    demo = Demo(DemoOptions(hosts=3, vms=4, port=0, browser=False, as_json=True,
                            workdir=tmp_path))
    end = time.time() - 5  # the run ended (began to stop) 5 s before the summary is read
    demo.started = end - 60
    fault = end - 40
    demo.faults = [Fault(t=20.0, kind="power_off", host="host2", wall=fault)]
    lines = []

    def writes(vm: str, host: str, token: int, start: float, stop: float) -> None:
        t = start
        while t <= stop:
            lines.append({"vm": vm, "host": host, "token": token, "seq": len(lines), "t": t})
            t += 0.1

    writes("vm1", "host2", 1, demo.started + 1, fault)  # moved, and runs at the end
    writes("vm1", "host1", 2, end - 31, end - 0.05)
    writes("vm2", "host2", 3, demo.started + 1, fault)  # moved, then died 10 s before the end
    writes("vm2", "host1", 4, end - 31, end - 10)
    writes("vm3", "host3", 5, demo.started + 1, end - 5)  # never moved, died 5 s before the end
    # vm4 never wrote at all
    lines.sort(key=lambda r: r["t"])
    demo.disk.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    demo.ended = end
    return demo, end


def test_a_vm_runs_at_the_end_only_if_it_wrote_in_the_last_second(tmp_path: Path) -> None:
    demo, _end = fabricated_demo(tmp_path)
    vms = demo.summary()["vms"]
    assert vms["vm1"]["host_before"] == "host2" and vms["vm1"]["host_after"] == "host1"
    assert vms["vm1"]["downtime_s"] == pytest.approx(9.0, abs=0.2)
    assert vms["vm2"]["host_before"] == "host2" and vms["vm2"]["host_after"] is None
    assert vms["vm2"]["downtime_s"] == pytest.approx(19.0, abs=0.2)
    assert vms["vm3"]["host_before"] == "host3" and vms["vm3"]["host_after"] is None
    assert vms["vm3"]["downtime_s"] == pytest.approx(5.0, abs=0.2)
    assert vms["vm4"] == {"host_before": None, "host_after": None,
                          "downtime_s": pytest.approx(60.0, abs=0.2)}



def test_without_a_fault_a_vm_that_stopped_writing_is_down_at_the_end(tmp_path: Path) -> None:
    demo, end = fabricated_demo(tmp_path)
    demo.faults = []
    vms = demo.summary()["vms"]
    assert vms["vm1"]["host_before"] == vms["vm1"]["host_after"] == "host1"
    assert vms["vm3"]["host_before"] == "host3" and vms["vm3"]["host_after"] is None
    assert vms["vm3"]["downtime_s"] == pytest.approx(5.0, abs=0.2)
    assert end - demo.started == pytest.approx(60.0)


def test_downtime_is_a_number_of_seconds_even_when_nothing_was_down(tmp_path: Path) -> None:
    demo, end = fabricated_demo(tmp_path)
    demo.faults = []
    steady = [{"vm": "vm1", "host": "host1", "token": 1, "seq": i, "t": demo.started + i / 10}
              for i in range(int((end - demo.started) * 10) + 1)]
    demo.disk.write_text("".join(json.dumps(r) + "\n" for r in steady), encoding="utf-8")
    downtime = demo.summary()["vms"]["vm1"]["downtime_s"]
    assert isinstance(downtime, float) and downtime == 0.0
