"""The release of ovi-bench: read by packaging (pyproject.toml), stamped into every run's provenance."""

__version__ = "0.1.0"
