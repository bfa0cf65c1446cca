"""Real QEMU guests for the lab, the demo and the tests.

- `image`: builds the tiny guest (Debian's kernel, a busybox initramfs) and knows where it is.
- `heartbeat`: reads the heartbeat records the guest writes to its own disk (the ground truth
  that two copies of a VM never ran at once).
- `domain`: the libvirt domain XML of such a guest.
- `libvirtd`: one libvirtd per lab host, each in its own network and mount namespace.
"""
