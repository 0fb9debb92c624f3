"""berth: run any OCI image as a container or as a microVM, and measure both.

The public Python API (``berth.Client``) is re-exported here lazily so that
``berth-runtime``, which imports ``berth.*`` on every container start, does not
pay for the engine's imports.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Client":
        from berth.engine.client import Client

        return Client
    raise AttributeError(f"module 'berth' has no attribute {name!r}")
