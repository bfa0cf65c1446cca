"""Hypervisors: the `Hypervisor` protocol and its drivers."""
