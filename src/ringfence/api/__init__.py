"""The operator's surface every agent serves: REST API, dashboard and Prometheus metrics
(`api.app.create_app`; the data comes through `api.source.ClusterSource`)."""

from ringfence.api.app import create_app
from ringfence.api.source import ClusterSource, StoreSource

__all__ = ["ClusterSource", "StoreSource", "create_app"]
