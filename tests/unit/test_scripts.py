"""The set-up scripts and the host installer (packaging/install.sh) never stop what they did
not start (standards: "never every `etcd` on the machine"), and README's first command works
as root and as a user with sudo.

The etcd script is read, not run, where running it could stop a service: Debian's init script
for etcd-server, asked to stop, kills every /usr/bin/etcd on the machine after 30 s.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"

# Commands that stop or kill processes or services.
_STOPPING = re.compile(
    r"init\.d/\S+\s+(stop|restart|force-reload)"
    r"|systemctl\b[^\n]*(\b(stop|restart|kill)\b|--now)"
    r"|\bservice\s+\S+\s+(stop|restart)"
    r"|invoke-rc\.d\s+\S+\s+(stop|restart)"
    r"|start-stop-daemon|\bpkill\b|\bkillall\b|\bkill\s"
)


def _commands(script: Path) -> list[tuple[int, str]]:
    """The script's lines that run something: not comments, not messages (echo, printf, and
    packaging/install.sh's `fail`) nor their quoted continuation lines."""
    found = []
    message = False  # on a continuation line of a message
    for number, line in enumerate(script.read_text().splitlines(), start=1):
        code = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        continued = message
        message = (continued or bool(re.match(r"(echo|printf|fail)\b", code))) \
            and code.endswith("\\")
        if code and not continued and not re.match(r"(echo|printf|fail)\b", code):
            found.append((number, code))
    return found


def test_no_setup_script_stops_a_service_or_kills_a_process() -> None:
    scripts = [p for p in SCRIPTS.iterdir() if p.is_file()] + [ROOT / ".ci" / "run",
                                                                ROOT / "packaging" / "install.sh"]
    offending = [f"{script.relative_to(ROOT)}:{number}: {code}"
                 for script in scripts for number, code in _commands(script)
                 if _STOPPING.search(code)]
    assert not offending, "scripts must not stop what they did not start:\n" + "\n".join(
        offending)
