"""The HTML report and the status page in a real browser: headless Chromium opens each page
from a file, renders it without a single console message (the pages have no script, so any
message is an error), and takes a screenshot that shows the page (its size, its colours: the
severity badge, the red of a VM that was down, the green of a passed check).

Chromium comes from Debian (`apt-get install -y chromium`, which scripts/dev-setup runs). The
test installs it when it is missing and it runs as root; it is skipped, saying why, only when
Chromium can not be had.
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import SCENARIOS
from ringfence.journal.report import incidents_of_simulation, write_reports
from ringfence.journal.status_page import write_status_page
from ringfence.sim.runner import simulate
from ringfence.sim.scenario import load_scenario

WIDTH, HEIGHT = 1200, 1600
BADGE_CRITICAL = (0xB4, 0x23, 0x18)
VM_DOWN = (0xD9, 0x2D, 0x20)
CHECK_GREEN = (0x06, 0x76, 0x47)


@functools.cache
def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "chromium"]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True,
                           timeout=300)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
        return shutil.which("chromium")
    return None


@pytest.fixture
def browser() -> str:
    found = chromium()
    if found is None:
        pytest.skip("Chromium is not installed and could not be installed here (not root, or "
                    "no apt-get): run scripts/dev-setup")
    return found


def render(browser: str, page: Path, tmp_path: Path) -> tuple[Path, str]:
    """Open `page` in headless Chromium; return the screenshot and the browser's log."""
    shot = tmp_path / f"{page.stem}.png"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
         "--enable-logging=stderr", "--v=0", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return shot, result.stderr


def console_problems(log: str) -> list[str]:
    """Console output of the page (it has no script: any is an error), uncaught exceptions,
    and failed loads."""
    return [line for line in log.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "net::ERR_" in line]


def decode_png(path: Path) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of raw pixels, bytes per pixel) of an 8-bit RGB/RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    previous = bytearray(stride)
    rows: list[bytes] = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else
                                      up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, rows, bpp


def colours(path: Path) -> tuple[tuple[int, int], set[tuple[int, int, int]]]:
    width, height, rows, bpp = decode_png(path)
    seen = {tuple(row[x * bpp:x * bpp + 3]) for row in rows[::2] for x in range(0, width, 2)}
    return (width, height), {(c[0], c[1], c[2]) for c in seen}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    found: dict[str, Path] = {}
    for name in ("000-carrier-loss", "003-reboot-storage-unwritable"):
        result = simulate(load_scenario(SCENARIOS / f"{name}.yaml"))
        incidents, ctx = incidents_of_simulation(result)
        write_reports(incidents, ctx, out / name)
        found[name] = out / name / f"{incidents[-1].id}.html"
        if name == "000-carrier-loss":
            states = {h.name: result.world.host_state(h.name, result.scenario.duration)
                      for h in result.world.config.hosts}
            html, _ = write_status_page(out / "status", cluster="atl", hosts_state=states,
                                        incidents=incidents, now=result.scenario.duration,
                                        simulated=True)
            found["status"] = html
    return found


@pytest.mark.parametrize("name", ["000-carrier-loss", "003-reboot-storage-unwritable"])
def test_report_renders_in_chromium(browser: str, pages: dict[str, Path], name: str,
                                    tmp_path: Path) -> None:
    shot, log = render(browser, pages[name], tmp_path)
    assert console_problems(log) == []
    assert shot.stat().st_size > 50_000, "the screenshot is nearly empty"
    size, seen = colours(shot)
    assert size == (WIDTH, HEIGHT)
    assert len(seen) > 50, "the screenshot shows too few colours to be the rendered report"
    assert BADGE_CRITICAL in seen, "the critical severity badge is not visible"
    assert VM_DOWN in seen, "the timeline chart's VM-down bars are not visible"
    assert CHECK_GREEN in seen, "the timeline chart's passed checks are not visible"


def test_report_dom_in_chromium(browser: str, pages: dict[str, Path], tmp_path: Path) -> None:
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         pages["000-carrier-loss"].resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    dom = result.stdout
    for heading in ("Summary", "Customer impact", "Timeline", "Root-cause evidence",
                    "Recommendations"):
        assert f"<h2>{heading}</h2>" in dom
    assert "<svg" in dom and "eth2 (customer)" in dom


def test_status_page_renders_in_chromium(browser: str, pages: dict[str, Path],
                                         tmp_path: Path) -> None:
    shot, log = render(browser, pages["status"], tmp_path)
    assert console_problems(log) == []
    size, seen = colours(shot)
    assert size == (WIDTH, HEIGHT) and len(seen) > 20
    assert (0xB5, 0x47, 0x08) in seen, "the 'degraded' banner is not visible"
