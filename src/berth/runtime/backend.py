"""The one place where the runtime picks how a container is isolated.

A bundle whose config.json carries the annotation ``org.berth.isolation=vm``
runs as a microVM (``berth.runtime.vm``), any other as Linux containers
(``berth.runtime.container.ops``). Once created, the choice is recorded in the
container's state (``backend``) and every later verb follows it. A backend
module provides the same verbs: create, run, start, kill, delete, get_state,
list_states, pids, pause, resume, exec_process.
"""

from berth.errors import UsageError

ISOLATION_ANNOTATION = "org.berth.isolation"


def _module(name: str):
    if name == "vm":
        try:
            from berth.runtime.vm import ops
        except ImportError:
            raise UsageError("isolation 'vm' is not available in this build of berth-runtime") from None
        return ops
    if name == "container":
        from berth.runtime.container import ops

        return ops
    raise UsageError(f"unknown isolation {name!r} (want container or vm)")


def for_config(cfg: dict):
    """The backend for a new container, from its config's annotations."""
    return _module((cfg.get("annotations") or {}).get(ISOLATION_ANNOTATION, "container"))


def for_container(root: str, cid: str):
    """The backend that created container ``cid`` (NotFound if there is none)."""
    from berth.runtime.container import state

    return _module(state.read(root, cid).get("backend", "container"))
