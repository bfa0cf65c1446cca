"""The real host agent: runtime loop, UDP heartbeats, local journal and local state."""
