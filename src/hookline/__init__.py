"""hookline: a self-hosted event and webhook platform for integration hubs."""

__version__ = "0.1.0"
