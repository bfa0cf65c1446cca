"""Decision code: no I/O, no wall clock. Everything it touches is injected (see `ports`)."""
