"""The VM backend behind ``berth-runtime``'s one dispatch point (``berth.runtime.backend``).

Same verbs and signatures as ``berth.runtime.container.ops`` (create, run, start,
kill, delete, get_state, list_states, pids, pause, resume, exec_process); bundles
annotated ``org.berth.isolation=vm`` land here. Container-only flags
(``no_pivot``, ``preserve_fds``) have no meaning for a VM and are ignored.
"""

from __future__ import annotations

import signal as _signal

from berth.errors import Conflict
from berth.runtime.vm import oci
from berth.runtime.vm.guestconfig import process_spec
from berth.runtime.vm.instance import VMInstance


def _signal_number(sig: str | int) -> int:
    if isinstance(sig, int) or str(sig).isdigit():
        n = int(sig)
        if not 0 < n < _signal.NSIG:
            raise Conflict(f"kill: invalid signal {sig}")
        return n
    name = str(sig).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise Conflict(f"kill: unknown signal {sig}") from None


def create(root: str, cid: str, bundle: str, pid_file: str | None = None, console_socket: str | None = None,
           no_pivot: bool = False, preserve_fds: int = 0, cfg: dict | None = None, rootfs: str | None = None) -> None:
    oci.create(bundle, cid, root, console_socket=console_socket, pid_file=pid_file)


def run(root: str, cid: str, bundle: str, detach: bool = False, pid_file: str | None = None,
        console_socket: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
        cfg: dict | None = None, rootfs: str | None = None) -> int:
    """create + start; without ``detach`` also wait and delete, returning the exit status."""
    if detach:
        oci.create(bundle, cid, root, console_socket=console_socket, pid_file=pid_file)
        oci.start(root, cid)
        return 0
    return oci.run(bundle, cid, root)


def start(root: str, cid: str) -> None:
    oci.start(root, cid)


def kill(root: str, cid: str, sig: str | int = "TERM", all_: bool = False) -> None:
    oci.kill(root, cid, _signal_number(sig))


def delete(root: str, cid: str, force: bool = False) -> None:
    oci.delete(root, cid, force=force)


def get_state(root: str, cid: str) -> dict:
    return oci.state(root, cid)


def list_states(root: str) -> list[dict]:
    return [oci.state(root, cid) for cid in oci.list_ids(root)]


def pids(root: str, cid: str) -> list[int]:
    """The host processes of the VM (QEMU); guest processes are not host pids."""
    vm = VMInstance.load(oci._dir(root, cid))
    if vm.status() not in ("created", "running"):
        raise Conflict(f"ps container {cid}: it is not running")
    return [vm.pid]


def pause(root: str, cid: str) -> None:
    oci.pause(root, cid)


def resume(root: str, cid: str) -> None:
    oci.resume(root, cid)


def exec_process(root: str, cid: str, proc: dict, detach: bool = False, pid_file: str | None = None,
                 console_socket: str | None = None, preserve_fds: int = 0) -> int:
    """Run a runtime-spec process in the VM with this process's stdio; its exit status."""
    vm = VMInstance.load(oci._dir(root, cid))
    return vm.exec_spec(process_spec(proc), stdin=0, stdout=1, stderr=2)
