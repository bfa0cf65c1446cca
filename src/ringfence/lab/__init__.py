"""`ringfence lab`: scenario files replayed on real clusters built in network namespaces.

Modules, one concern each: `netns` (namespaces and their processes), `slots` (which lab is
which), `topology` (namespaces, bridges, veths, the switch's filters), `paths` (the lab's
directory), `cluster_file` (the real cluster files), `store_members` (etcd members in the
namespaces), `fence_agent` (the power controller), `hosts` (boot, power off, hang: a host's
processes), `faults` (the fault table), `truth` (runs from the VMs' disk writes), `judge` (the
simulator's checker on the lab's records, the same JSON), `runner` (one run, start to
teardown), `run_all` (the library table) and `cli`.

This package imports nothing heavy at import time: the fence agent runs from it.
"""
