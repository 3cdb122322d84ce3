"""bramble: a cluster of identical small boards from one spec file."""

__version__ = "0.1.0"
