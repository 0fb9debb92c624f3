"""The process that owns a VM created through the OCI-shaped API (``oci.create``).

``python -m berth.runtime.vm.monitor STATE_DIR READY_FD`` (started detached by
``oci.create``) boots the VM, reports "ok" or the error on READY_FD, then blocks
opening ``STATE_DIR/exec.fifo`` for writing until ``oci.start`` opens it for reading
(runc's exec.fifo), sends START, pumps the workload's stdio between its own fds
0/1/2 (inherited from the ``create`` caller, as runc's container process inherits
them) and the VM, records the exit status in the state file, and exits when the VM
has stopped, with the workload's exit status as its own (128+N when the VM was
killed by signal N, 255 when the guest failed): the OCI state's ``pid`` is this
process, so an engine's monitor that reaps it (as subreaper, like conmon) gets the
workload's status as it would from a container's init. It holds the only
connection to the main port and the console.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from berth.errors import BerthError
from berth.runtime.vm.instance import VMFailure, VMInstance
from berth.runtime.vm.state import proc_start_time


def main(argv: list[str]) -> int:
    state_dir, ready_fd = Path(argv[0]), int(argv[1])
    vm = VMInstance.load(state_dir)
    vm.state.monitor = [os.getpid(), proc_start_time(os.getpid()) or 0]
    vm.state.save(state_dir)
    try:
        vm.boot()
    except BerthError as e:
        os.write(ready_fd, f"error {e.exit_code} {e}".encode())
        return 1
    os.write(ready_fd, f"ok {os.getpid()}".encode())
    os.close(ready_fd)
    # Blocks until `start` has the reading end open; the byte tells it we are past
    # the rendezvous (runc's exec.fifo protocol).
    fd = os.open(state_dir / "exec.fifo", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    except BrokenPipeError:  # `start` gave up waiting; starting is still what was asked
        pass
    os.close(fd)
    try:
        os.unlink(state_dir / "exec.fifo")
    except FileNotFoundError:
        pass
    tty = os.environ.get("BERTH_VM_TTY_FD")
    stdin, stdout, stderr = (int(tty),) * 3 if tty else (0, 1, 2)
    vm.start(stdin=stdin, stdout=stdout, stderr=stderr)
    try:
        return vm.wait()
    except VMFailure as e:
        vm.state.error = str(e)
        vm.state.save(state_dir)
        rc = vm.qemu_returncode()
        return 128 - rc if rc is not None and rc < 0 else 255


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
