"""Coordination stores: the `Store` protocol and its engines (simulated here; SQLite and etcd)."""
