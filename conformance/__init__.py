"""Conformance: golden vectors, the runner that checks implementations, adapters, size models."""
