"""The web UI's static files. ``mount(app)`` is the hook ``gateway.app`` calls at start-up."""

from gateway.web_routes import include_web as mount

__all__ = ["mount"]
