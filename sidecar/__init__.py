"""The asyncio service that runs the ``consensus`` core against relays, Redis and the operator's DVM."""

__version__ = "0.1.0"
