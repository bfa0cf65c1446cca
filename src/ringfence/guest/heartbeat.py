"""The heartbeat records a ringfence guest writes to its own disk image (see ``init.sh``), read
from the host: the ground truth that two copies of a VM never ran at once, and that a live
migration did not restart the guest.

Disk layout (raw image, 512-byte sectors): sector 0 holds the latest record, sectors 1..N a
ring of all records (record SEQ in sector 1 + SEQ % N). A record is the text
``RFHB1 NAME BOOT SEQ UPTIME`` padded with spaces. BOOT is random per boot of the guest; SEQ
continues across boots on the same disk.

Reading: the guest writes with O_DIRECT and the domain's disk has cache='none', so a record is
in the image file once the guest's write returns; the host reads the file with ordinary reads
(a write through O_DIRECT invalidates the host's page cache for that range).

Failure semantics: unreadable sectors (never written, torn by a concurrent write, another
format) are skipped, never raised; `read_head` returns None when sector 0 holds no record.
`OSError` when the image file itself can not be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SECTOR", "Beat", "create_disk", "one_writer_problems", "read_head", "read_ring"]

SECTOR = 512
MAGIC = "RFHB1"
DEFAULT_DISK_BYTES = 4 << 20  # 8191 ring slots: 27 minutes of records at 5 per second


@dataclass(frozen=True, slots=True, order=True)
class Beat:
    seq: int
    boot: str
    name: str
    uptime: float


def parse(sector: bytes) -> Beat | None:
    """The record in one sector, or None."""
    try:
        words = sector.decode("ascii").split()
    except UnicodeDecodeError:
        return None
    if len(words) != 5 or words[0] != MAGIC:
        return None
    try:
        return Beat(seq=int(words[3]), boot=words[2], name=words[1], uptime=float(words[4]))
    except ValueError:
        return None


def create_disk(path: Path, size: int = DEFAULT_DISK_BYTES) -> None:
    """A fresh, empty (sparse) heartbeat disk; an existing one is kept as it is, so that a VM
    restarted on it carries on counting."""
    if path.exists():
        return
    with open(path, "wb") as disk:
        disk.truncate(size)


def read_head(path: Path) -> Beat | None:
    """The latest record (sector 0)."""
    with open(path, "rb") as disk:
        return parse(disk.read(SECTOR))


def read_ring(path: Path) -> list[Beat]:
    """Every record still in the ring, by SEQ."""
    beats = []
    with open(path, "rb") as disk:
        disk.seek(SECTOR)
        while True:
            block = disk.read(SECTOR * 256)
            if not block:
                break
            for at in range(0, len(block), SECTOR):
                beat = parse(block[at:at + SECTOR])
                if beat is not None:
                    beats.append(beat)
    return sorted(beats)


def one_writer_problems(beats: list[Beat]) -> list[str]:
    """What in `beats` (by SEQ) shows that two copies wrote at once: a boot that writes again
    after another boot took over, or a SEQ written twice. Empty when one copy wrote at a time.
    """
    problems = []
    finished: set[str] = set()
    previous: Beat | None = None
    for beat in beats:
        if previous is not None:
            if beat.seq == previous.seq:
                problems.append(f"record {beat.seq} written by boots {previous.boot} and "
                                f"{beat.boot}")
            if beat.boot != previous.boot:
                finished.add(previous.boot)
                if beat.boot in finished:
                    problems.append(f"boot {beat.boot} writes record {beat.seq} after boot "
                                    f"{previous.boot} wrote {previous.seq}: two copies ran")
        previous = beat
    return problems

