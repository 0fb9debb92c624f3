"""The container's terminal: a pty made inside the container, master sent out.

Like runc, the pty is allocated from the container's own devpts (after
pivot_root, /dev/ptmx -> pts/ptmx), and the master is sent with SCM_RIGHTS
over the --console-socket the caller listens on.
"""

import fcntl
import os
import struct
import termios


def preload() -> None:
    import socket  # noqa: F401


def connect(path: str) -> int:
    """Connect to the console socket (on the host, before pivot_root); returns an fd."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise OSError(e.errno, f"connect console socket {path}: {e.strerror}") from None
    return s.detach()


def setup(sock_fd: int, size: dict | None) -> None:
    """Open a pty, send its master over ``sock_fd``, make the slave our controlling tty and stdio."""
    import socket

    master, slave = os.openpty()
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size["height"], size["width"], 0, 0))
    s = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(s, [b"/dev/ptmx"], [master])
    finally:
        s.close()
        os.close(master)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def receive(sock) -> int:
    """Receive one pty master fd on an accepted console socket connection."""
    import socket

    _, fds, _, _ = socket.recv_fds(sock, 1024, 1)
    if not fds:
        raise OSError("console socket: no file descriptor received")
    return fds[0]


def socket_pair() -> tuple[int, int]:
    """(ours, theirs): a connected pair standing in for --console-socket when
    the CLI itself is the terminal's other end (foreground run/exec)."""
    import socket

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def proxy(sock_fd: int) -> None:
    """Take the pty master from ``sock_fd`` and copy our stdin to it and its
    output to our stdout until the container side closes (EIO/EOF); our own
    terminal, if any, is raw meanwhile and restored after."""
    import select
    import socket

    s = socket.socket(fileno=sock_fd)
    try:
        master = receive(s)
    finally:
        s.close()
    saved = None
    if os.isatty(0):
        import _signal
        import tty

        def copy_size(*_):
            try:
                fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
            except OSError:
                pass

        saved = termios.tcgetattr(0)
        copy_size()
        # our terminal resized -> the container's (the kernel then signals its foreground group)
        _signal.signal(_signal.SIGWINCH, copy_size)
        tty.setraw(0)
    inputs = [master, 0]
    try:
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    inputs.remove(0)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        os.close(master)
