"""The journal and what is built from it: normalised events (`events`), incidents correlated
from them (`incidents`), post-incident reports (`report`) and the public status page
(`status_page`). Every module is a pure function of its inputs except the writers, which write
only the files they are asked to."""

from ringfence.journal.events import Event, from_journal_files, from_world
from ringfence.journal.incidents import Incident, Outage, VmImpact, build_incidents

__all__ = [
    "Event",
    "Incident",
    "Outage",
    "VmImpact",
    "build_incidents",
    "from_journal_files",
    "from_world",
]
