"""The cluster file: its schema, its cross-checks, and loading it with line numbers.

The models here describe a cluster (networks, hosts, witnesses, store, fencing, datastores,
groups, VMs, policy, alerts, API). Every model forbids unknown fields and is frozen. Field
validators check single values; the ``model_validator`` of :class:`Timing` checks that the timers
are safe together, and the one of :class:`ClusterConfig` checks references between sections
(unknown networks, hosts, VMs, datastores; VMs that do not fit their hosts; hosts without a
heartbeat network).

Where things are (import them from ``ringfence.config``, which re-exports every public name):

* :mod:`~ringfence.config.problems`: field paths (:data:`Loc`), line maps, :class:`FieldProblems`.
* :mod:`~ringfence.config.fields`: the bounds (``MAX_*``) and the field types sections share.
* :mod:`~ringfence.config.timing`: :class:`Timing` and the checks of the timers together.
* :mod:`~ringfence.config.nodes`: :class:`Network`, :class:`Interface`, :class:`Host`,
  :class:`Witness`.
* :mod:`~ringfence.config.services`: :class:`StoreConfig`, :class:`FenceConfig`,
  :class:`Alert`, :class:`ApiConfig`.
* :mod:`~ringfence.config.vms`: :class:`VM`, :class:`Datastore` and its :class:`ProbeConfig`,
  :class:`Group`, :class:`VerifyConfig`, :class:`Policy`.
* :mod:`~ringfence.config.cluster`: :class:`ClusterConfig` and the checks between sections.
* :mod:`~ringfence.config.yaml_reader`: :func:`read_yaml`, :func:`parse_yaml` (YAML with lines).
* :mod:`~ringfence.config.validation`: :func:`validate_document` (pydantic errors for people).
* :mod:`~ringfence.config.load`: :func:`parse_cluster`, :func:`load_cluster`.

Errors:

* Constructing a model directly from Python raises :class:`pydantic.ValidationError`; messages of
  the cross-checks name the field path they are about.
* :func:`load_cluster`, :func:`parse_cluster` and :func:`read_yaml` raise
  :class:`ringfence.errors.ConfigError`, one :class:`~ringfence.errors.Problem` per mistake, each
  with the file, the line, the field path in the file's terms (``hosts[1].memory``) and a message
  saying what is expected there. Unreadable files, YAML syntax errors, duplicate keys and a top
  level that is not a mapping are reported the same way.

The YAML reader uses the YAML 1.2 core scalars rather than PyYAML's YAML 1.1 defaults (see
:mod:`~ringfence.config.yaml_reader`): ``on``/``off``/``yes``/``no`` stay strings, ``010`` is
ten, and an unquoted MAC address is not read as a base-60 integer.
"""

from __future__ import annotations

from ringfence.alerts.models import Alert  # the alert routes: their own module
from ringfence.config.cluster import ClusterConfig
from ringfence.config.fields import (
    MAX_ALIAS_VALUES,
    MAX_HOSTS,
    MAX_VMS,
    MAX_WITNESSES,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
)
from ringfence.config.load import load_cluster, parse_cluster
from ringfence.config.nodes import Host, Interface, Network, Witness
from ringfence.config.problems import FieldProblems, LineMap, Loc, format_path, unknown_name
from ringfence.config.services import ApiConfig, ApiTLS, FenceConfig, StoreConfig, StoreTLS
from ringfence.config.timing import Timing
from ringfence.config.validation import validate_document
from ringfence.config.vms import VM, Datastore, Group, Policy, ProbeConfig, VerifyConfig
from ringfence.config.yaml_reader import parse_yaml, read_yaml

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_HOSTS",
    "MAX_VMS",
    "MAX_WITNESSES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "VM",
    "Alert",
    "ApiConfig",
    "ApiTLS",
    "ClusterConfig",
    "Datastore",
    "FenceConfig",
    "FieldProblems",
    "Group",
    "Host",
    "Interface",
    "LineMap",
    "Loc",
    "Network",
    "Policy",
    "ProbeConfig",
    "StoreConfig",
    "StoreTLS",
    "Timing",
    "VerifyConfig",
    "Witness",
    "format_path",
    "load_cluster",
    "parse_cluster",
    "parse_yaml",
    "read_yaml",
    "unknown_name",
    "validate_document",
]
