"""IRMI chest X-ray service."""

__version__ = "0.1.0"
