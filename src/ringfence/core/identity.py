"""May this host join the store it reaches, bootstrap it, or must it refuse it?

Pure decision over what the store holds (`cluster/identity`, see `store.identity`) and what the
host remembers on its own disk (the identity it joined, and the highest revision it saw):

- the store holds no identity, the host remembers none: bootstrap if this host may
  (`--bootstrap`, or `store.bootstrap` names it and no host has ever joined this store), else
  wait;
- no identity, but the host remembers one: refuse (the store was wiped or replaced);
- the identity of another cluster: refuse;
- another identity than the one the host remembers: refuse (another store at the same place);
- the remembered identity, at a revision below the one the host saw: refuse (restored from an
  older backup: fencing tokens would be issued twice);
- an identity, and the host remembers none or the same: join, and remember it.

A refusal is final for the decision code: the host starts nothing, stops nothing and takes no
lease in that store; an operator restores the store, or deliberately re-bootstraps it (stop the
agents, then start them with `--forget-store`, one of them with `--bootstrap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ringfence.store.identity import StoreIdentity

IDENTITY_MEMORY = "store_identity"  # LocalState key: the identity joined, and the revision seen


@dataclass(frozen=True, slots=True)
class Remembered:
    """What a host keeps on its disk about the store it belongs to."""

    identity: StoreIdentity | None
    revision: int = 0
    generation_seen: int = 0  # the highest generation ever joined (kept by --forget-store)

    @staticmethod
    def parse(value: dict[str, object] | None) -> Remembered:
        if not value:
            return Remembered(None)
        revision = value.get("revision", 0)
        seen = value.get("generation_seen", 0)
        identity = StoreIdentity.parse(value.get("identity"))
        return Remembered(identity,
                          revision if isinstance(revision, int) else 0,
                          seen if isinstance(seen, int) else 0)

    def value(self) -> dict[str, object]:
        return {"identity": self.identity.value() if self.identity else None,
                "revision": self.revision,
                "generation_seen": max(self.generation_seen,
                                       self.identity.generation if self.identity else 0)}


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Literal["join", "bootstrap", "wait", "refuse"]
    identity: StoreIdentity | None
    reason: str


def judge(*, cluster: str, found: StoreIdentity | None, found_raw: bool, store_revision: int,
          hosts_joined: bool, remembered: Remembered, bootstrap_flag: bool,
          named_bootstrap: str | None, host: str, new_id: str | None) -> Verdict:
    """The table of the module docstring. `found_raw`: the identity key exists (even if it
    does not hold an identity); `hosts_joined`: the store has records of hosts."""
    mine = remembered.identity
    if found is None and found_raw:
        return Verdict("refuse", None, "the store's cluster/identity key holds something "
                                       "that is not a ringfence identity")
    if found is None:
        if mine is not None:
            return Verdict("refuse", None,
                           f"the store holds no cluster identity, but this host joined store "
                           f"{mine.short()}: the store was wiped or replaced. Restore it, or "
                           f"re-bootstrap it deliberately (docs/operations.md)")
        may = bootstrap_flag or (named_bootstrap == host and not hosts_joined)
        if not may:
            who = (f"{named_bootstrap} to bootstrap it" if named_bootstrap
                   else "a host started with --bootstrap (or store.bootstrap in the "
                        "cluster file)")
            return Verdict("wait", None,
                           f"the store has no cluster identity yet: waiting for {who}")
        if new_id is None:
            return Verdict("wait", None, "no source of random identities: can not bootstrap")
        return Verdict("bootstrap",
                       StoreIdentity(cluster, new_id, remembered.generation_seen + 1),
                       f"{host} bootstraps the store of cluster {cluster}")
    if found.cluster != cluster:
        return Verdict("refuse", None, f"the store belongs to cluster {found.cluster!r}, not "
                                       f"{cluster!r}")
    if mine is not None and mine != found:
        return Verdict("refuse", None, f"the store has identity {found.short()}, but this "
                                       f"host joined store {mine.short()}: another store "
                                       f"answers at the same place")
    if mine is not None and store_revision < remembered.revision:
        return Verdict("refuse", None, f"the store is at revision {store_revision}, but this "
                                       f"host saw revision {remembered.revision}: it was "
                                       f"restored from an older backup, and fencing tokens "
                                       f"would be issued twice")
    return Verdict("join", found, f"{host} joins store {found.short()}")
