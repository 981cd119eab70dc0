"""Reusable tasks: one module per system they talk to."""
