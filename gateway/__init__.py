"""IRMI gateway: the only public service."""

__version__ = "0.1.0"
