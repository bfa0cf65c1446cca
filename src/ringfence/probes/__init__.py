"""Host probes: NIC identity and carrier, datastore write probes, corrected memory errors."""
