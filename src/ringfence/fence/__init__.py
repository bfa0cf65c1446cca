"""Fencing: fence agents (power off a host out of band) and the watchdog (self-fence)."""
