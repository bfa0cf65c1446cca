"""Deterministic simulation of ringfence clusters on virtual time."""
