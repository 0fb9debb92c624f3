"""``berth.image.pull.pull(store, ref, ...)``: the registry pull, under the name the
engine's Python API imports it by. The implementation is ``berth.image.registry``."""

from berth.image.registry import pull

__all__ = ["pull"]
