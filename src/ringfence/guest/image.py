"""The tiny guest image: Debian's stock kernel and a busybox initramfs, booted directly by QEMU
(no bootloader, no root file system).

What `build(directory)` makes there:

- ``vmlinux``: the uncompressed kernel (an ELF that QEMU boots by PVH). It is cut out of the
  ``vmlinuz`` of the Debian package ``linux-image-<version>-amd64`` (the version that
  ``linux-image-amd64`` depends on), which is fetched with ``apt-get download`` and unpacked
  with ``dpkg-deb -x``: never installed, so no initramfs-tools or bootloader hooks run. The
  uncompressed kernel matters without KVM: under software emulation (TCG) the kernel's own XZ
  decompressor costs ~8 s of a 12-16 s boot.
- ``modules/``: the nine virtio modules the guest needs (Debian builds virtio as modules) and
  virtio_blk for the heartbeat disk.
- ``qemu-ga/``: QEMU's guest agent (``qemu-ga`` from the Debian package
  ``qemu-guest-agent``, fetched and unpacked like the kernel, never installed) and the shared
  libraries it needs, copied from this host (where ``ldd`` finds them: glib, libudev, libnuma,
  liburing, libc and the dynamic loader; ``scripts/install-qemu`` installs them with QEMU), so
  that ``verify: {guest_agent: true}`` can ask a guest for ``guest-ping``.
- ``initrd.gz``: a newc cpio archive (written here, the host needs no ``cpio``) holding the
  static busybox of the ``busybox-static`` package, the modules, the guest agent with its
  libraries (``/usr/sbin/qemu-ga``, ``/lib/...``, ``/lib64/ld-linux-x86-64.so.2``), and
  ``/init`` (``init.sh`` next to this module: what the guest does is documented there).
- ``manifest.json``: the kernel version, the guest agent's package version and a digest of
  what the initramfs was built from.

Idempotent: the kernel is fetched only if ``vmlinux`` is missing, the guest agent only if
``qemu-ga/`` is, and the initramfs is rebuilt only if ``init.sh``, the module list, busybox
or the guest agent's files changed. Everything is written to temporary
names and renamed, so an interrupted build leaves no half-written file under a final name.

Failure semantics: `ImageError` (a `RuntimeError`) names the step and the command's output when
a package can not be fetched or unpacked, busybox is missing, or a module is not in the kernel
package; nothing outside `directory` and a temporary directory is written.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODULES", "GuestImage", "ImageError", "build", "default_image_dir", "newc_archive"]

# Module name -> path under lib/modules/VERSION/kernel, in the order /init loads them
# (busybox insmod resolves no dependencies).
MODULES: tuple[tuple[str, str], ...] = (
    ("virtio_ring", "drivers/virtio/virtio_ring.ko"),
    ("virtio", "drivers/virtio/virtio.ko"),
    ("virtio_pci_modern_dev", "drivers/virtio/virtio_pci_modern_dev.ko"),
    ("virtio_pci_legacy_dev", "drivers/virtio/virtio_pci_legacy_dev.ko"),
    ("virtio_pci", "drivers/virtio/virtio_pci.ko"),
    ("failover", "net/core/failover.ko"),
    ("net_failover", "drivers/net/net_failover.ko"),
    ("virtio_net", "drivers/net/virtio_net.ko"),
    ("virtio_console", "drivers/char/virtio_console.ko"),
    ("virtio_blk", "drivers/block/virtio_blk.ko"),
)
BUSYBOX = Path("/bin/busybox")
INIT_SCRIPT = Path(__file__).with_name("init.sh")
GUEST_AGENT_PACKAGE = "qemu-guest-agent"
LOADER = "/lib64/ld-linux-x86-64.so.2"  # the interpreter named by the x86_64 ELF binaries


class ImageError(RuntimeError):
    """The guest image could not be built; the message names the step."""


@dataclass(frozen=True, slots=True)
class GuestImage:
    """Where a built image's files are."""

    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.gz"

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def guest_agent(self) -> Path:
        """The guest agent's files: ``usr/sbin/qemu-ga`` and its libraries, by guest path."""
        return self.directory / "qemu-ga"

    def ready(self) -> bool:
        return (self.kernel.is_file() and self.initrd.is_file() and self.manifest.is_file()
                and (self.guest_agent / "usr" / "sbin" / "qemu-ga").is_file())


def default_image_dir() -> Path:
    """``$RINGFENCE_GUEST_IMAGE`` if set; else /var/cache/ringfence/guest for root and
    ~/.cache/ringfence/guest for anyone else."""
    if os.environ.get("RINGFENCE_GUEST_IMAGE"):
        return Path(os.environ["RINGFENCE_GUEST_IMAGE"])
    if os.geteuid() == 0:
        return Path("/var/cache/ringfence/guest")
    return Path.home() / ".cache" / "ringfence" / "guest"


def _run(argv: list[str], step: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600,
                              check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"{step}: {' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise ImageError(f"{step}: {' '.join(argv)} failed: "
                         f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def kernel_package() -> str:
    """The versioned kernel package that Debian's ``linux-image-amd64`` depends on."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"], "find the kernel package")
    for line in out.splitlines():
        word = line.strip().removeprefix("Depends:").strip()
        if word.startswith("linux-image-") and word[len("linux-image-"):][:1].isdigit():
            return word
    raise ImageError("find the kernel package: linux-image-amd64 depends on no versioned "
                     "linux-image package (apt-cache depends linux-image-amd64)")


def _fetch_kernel(image: GuestImage, work: Path) -> str:
    package = kernel_package()
    _download(package, work)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if not debs:
        raise ImageError(f"download {package}: apt-get download left no .deb in {work}")
    root = work / "root"
    _run(["dpkg-deb", "-x", str(debs[0]), str(root)], f"unpack {debs[0].name}")
    versions = sorted((root / "lib" / "modules").iterdir())
    if len(versions) != 1:
        raise ImageError(f"unpack {debs[0].name}: expected one lib/modules/VERSION, "
                         f"found {[v.name for v in versions]}")
    version = versions[0].name
    vmlinuz = root / "boot" / f"vmlinuz-{version}"
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise ImageError(f"{vmlinuz.name} holds no XZ-compressed kernel")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    if not elf.startswith(b"\x7fELF"):
        raise ImageError(f"{vmlinuz.name}: the decompressed kernel is not an ELF file")
    modules = image.directory / "modules"
    modules.mkdir(parents=True, exist_ok=True)
    for name, relative in MODULES:
        source = versions[0] / "kernel" / relative
        if not source.is_file():
            raise ImageError(f"{package} has no module {relative}")
        shutil.copyfile(source, modules / f"{name}.ko")
    _write_atomically(image.kernel, elf)
    return version


def _fetch_guest_agent(image: GuestImage, work: Path) -> str:
    """Unpack ``qemu-ga`` from its Debian package into a fresh ``qemu-ga/`` (renamed into
    place at the end), with every shared library ``ldd`` says it needs, under the path the
    guest's loader looks for it at. Returns the package's version."""
    _download(GUEST_AGENT_PACKAGE, work)
    debs = sorted(work.glob(f"{GUEST_AGENT_PACKAGE}_*.deb"))
    if not debs:
        raise ImageError(f"download {GUEST_AGENT_PACKAGE}: apt-get download left no .deb "
                         f"in {work}")
    root = work / "agent-root"
    _run(["dpkg-deb", "-x", str(debs[0]), str(root)], f"unpack {debs[0].name}")
    binary = root / "usr" / "sbin" / "qemu-ga"
    if not binary.is_file():
        raise ImageError(f"{debs[0].name} holds no usr/sbin/qemu-ga")
    staging = image.directory / ".qemu-ga.tmp"  # on the image's file system: renamed
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "usr" / "sbin").mkdir(parents=True)
    shutil.copy2(binary, staging / "usr" / "sbin" / "qemu-ga")
    for library in shared_libraries(binary):
        target = staging / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(library).resolve(), target)
        target.chmod(0o755)
    version = _run(["dpkg-deb", "-f", str(debs[0]), "Version"],
                   f"read {debs[0].name}").strip()
    if image.guest_agent.exists():
        shutil.rmtree(image.guest_agent)
    os.replace(staging, image.guest_agent)
    return version


def shared_libraries(binary: Path) -> list[str]:
    """The shared libraries (paths on this host, as the loader finds them) that `binary`
    needs, the loader included; ImageError naming the ones not found."""
    out = _run(["ldd", str(binary)], f"list the libraries of {binary.name}")
    found: list[str] = []
    missing: list[str] = []
    for line in out.splitlines():
        name, arrow, rest = line.strip().partition("=>")
        where = (rest if arrow else name).split("(")[0].strip()
        if "not found" in rest:
            missing.append(name.strip())
        elif where.startswith("/"):
            found.append(where)
    if missing:
        raise ImageError(f"{binary.name} needs {', '.join(missing)}, not on this host "
                         f"(scripts/install-qemu installs them with QEMU)")
    if LOADER not in found:
        found.append(LOADER)
    return found


def _download(package: str, work: Path) -> None:
    try:
        _run(["apt-get", "download", package], f"download {package}", cwd=work)
    except ImageError:
        if os.geteuid() != 0:
            raise
        # stale package lists on a fresh machine: refresh them once (root only)
        _run(["apt-get", "update", "-qq"], "apt-get update")
        _run(["apt-get", "download", package], f"download {package}", cwd=work)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def newc_archive(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's initramfs format (newc) of `entries`: (path, mode,
    content) with mode including the file type bits; directories have empty content."""
    out = io.BytesIO()

    def put(name: str, mode: int, data: bytes, ino: int) -> None:
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        out.write(b"\0" * (-(110 + len(raw)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))

    for ino, (name, mode, data) in enumerate(entries, start=1):
        put(name, mode, data, ino)
    put("TRAILER!!!", 0, b"", 0)
    return out.getvalue()


def _initramfs(image: GuestImage, busybox: Path) -> tuple[bytes, str]:
    init = INIT_SCRIPT.read_text().replace("@MODULES@", " ".join(n for n, _ in MODULES))
    box = busybox.read_bytes()
    entries: list[tuple[str, int, bytes]] = [
        (d, 0o40755, b"") for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "www", "etc",
                                     "lib", "lib/modules", "run", "var", "var/run")]
    entries.append(("bin/busybox", 0o100755, box))
    entries.append(("init", 0o100755, init.encode()))
    digest = hashlib.sha256(init.encode() + box)
    for name, _ in MODULES:
        data = (image.directory / "modules" / f"{name}.ko").read_bytes()
        entries.append((f"lib/modules/{name}.ko", 0o100644, data))
        digest.update(data)
    have = {name for name, _, _ in entries}
    for path in sorted(image.guest_agent.rglob("*")):
        relative = path.relative_to(image.guest_agent).as_posix()
        if path.is_dir():
            if relative not in have:
                entries.append((relative, 0o40755, b""))
            continue
        data = path.read_bytes()
        entries.append((relative, 0o100755, data))
        digest.update(relative.encode() + data)
    return gzip.compress(newc_archive(entries), compresslevel=6, mtime=0), digest.hexdigest()


def build(directory: Path | None = None, *, busybox: Path = BUSYBOX) -> GuestImage:
    """Build (or bring up to date) the guest image in `directory`; see the module docstring."""
    image = GuestImage(directory or default_image_dir())
    image.directory.mkdir(parents=True, exist_ok=True)
    if not busybox.is_file():
        raise ImageError(f"{busybox} is missing: install the busybox-static package "
                         f"(scripts/install-qemu)")
    manifest: dict[str, str] = {}
    if image.manifest.is_file():
        try:
            manifest = dict(json.loads(image.manifest.read_text()))
        except (ValueError, TypeError):
            manifest = {}
    have_modules = all((image.directory / "modules" / f"{n}.ko").is_file() for n, _ in MODULES)
    if not image.kernel.is_file() or not have_modules or "kernel" not in manifest:
        with tempfile.TemporaryDirectory(prefix="rfq-kernel-") as work:
            manifest["kernel"] = _fetch_kernel(image, Path(work))
    if not (image.guest_agent / "usr" / "sbin" / "qemu-ga").is_file() \
            or "guest_agent" not in manifest:
        with tempfile.TemporaryDirectory(prefix="rfq-agent-") as work:
            manifest["guest_agent"] = _fetch_guest_agent(image, Path(work))
    initrd, digest = _initramfs(image, busybox)
    if manifest.get("initramfs") != digest or not image.initrd.is_file():
        _write_atomically(image.initrd, initrd)
        manifest["initramfs"] = digest
    _write_atomically(image.manifest, json.dumps(manifest, indent=1).encode())
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ringfence.guest.image",
        description="Build ringfence's tiny QEMU guest image (Debian kernel + busybox "
                    f"initramfs). Default directory: {default_image_dir()}")
    parser.add_argument("command", choices=["build", "path"])
    parser.add_argument("directory", nargs="?", type=Path)
    args = parser.parse_args(argv)
    image = GuestImage(args.directory or default_image_dir())
    if args.command == "path":
        print(image.directory)
        return 0 if image.ready() else 1
    try:
        image = build(image.directory)
    except (ImageError, OSError) as exc:
        print(f"guest image: {exc}", file=sys.stderr)
        return 1
    manifest = json.loads(image.manifest.read_text())
    print(f"guest image: {image.directory} (kernel {manifest['kernel']}, "
          f"initrd {image.initrd.stat().st_size >> 10} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
