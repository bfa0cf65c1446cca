"""ringfence: a high-availability manager for clusters of virtual-machine hosts."""

__version__ = "0.1.0"
