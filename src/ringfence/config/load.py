"""Loading a cluster file: read the YAML with its lines, then validate it as a cluster.

Both functions raise :class:`ringfence.errors.ConfigError`, one problem per mistake, each
naming the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path

from ringfence.config.cluster import ClusterConfig
from ringfence.config.problems import LineMap
from ringfence.config.validation import validate_document
from ringfence.config.yaml_reader import read_yaml


def parse_cluster(
    data: object, *, file: str | None = None, lines: LineMap | None = None
) -> ClusterConfig:
    """Validate parsed cluster-file data; :class:`ConfigError` names file, line and field."""
    return validate_document(ClusterConfig, data, file=file, lines=lines, what="cluster")


def load_cluster(path: str | Path) -> ClusterConfig:
    """Read, parse and validate the cluster file *path*; :class:`ConfigError` on any problem."""
    data, lines = read_yaml(path)
    return parse_cluster(data, file=str(path), lines=lines)
