"""Code shared by the IRMI services: settings, image decoding, errors, ONNX models, routes."""

__version__ = "0.1.0"
