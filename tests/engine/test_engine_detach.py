"""Detach keys (docker's ctrl-p,ctrl-q and --detach-keys) on run -it, start -ai,
attach, and on a plain pipe with run -i: the CLI leaves, the container runs on."""

import os
import pty
import select
import subprocess
import time

import pytest
from engine_helpers import BERTH, wait_for

from berth.engine.attach import EscapeFilter, parse_detach_keys
from berth.errors import UsageError


class Pty:
    """``berth ARGS`` on a new pseudo-terminal, as a user at a terminal runs it."""

    def __init__(self, berth, *args: str):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([BERTH, "--root", str(berth.root), *args], stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 30) -> bytes:
        """Read until ``text`` appeared (a bound on waiting, not a timing assertion)."""
        end = time.monotonic() + timeout
        while text not in self.seen and time.monotonic() < end:
            r, _, _ = select.select([self.master], [], [], 0.2)
            if r:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the slave side closed: the CLI exited
                    break
        assert text in self.seen, self.seen
        return self.seen

    def keys(self, *presses: bytes) -> None:
        for k in presses:  # one key press, one write
            os.write(self.master, k)
            time.sleep(0.05)

    def wait(self) -> int:
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.drain()
            os.close(self.master)
        return code

    def drain(self) -> bytes:
        while True:
            r, _, _ = select.select([self.master], [], [], 0.2)
            if not r:
                return self.seen
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return self.seen
            if not chunk:
                return self.seen
            self.seen += chunk


def _running(berth, name: str) -> bool:
    return berth.status(name)["Running"]


def test_detach_keys_parse_as_docker():
    assert parse_detach_keys(None) == parse_detach_keys("") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,DEL") == \
        b"\x01x\x00\x1b\x1c\x1d\x1e\x1f\x7f"
    for bad in ("ctrl-1", "ctrl-", "ab", "ctrl-P", "a,,b", "é"):
        with pytest.raises(UsageError):
            parse_detach_keys(bad)


def test_escape_filter_holds_keys_and_lets_bulk_data_through():
    f = EscapeFilter(b"\x10\x11")
    assert f.feed(b"ls\r") == (b"ls\r", False)
    assert f.feed(b"\x10") == (b"", False)  # held: maybe the start of the sequence
    assert f.feed(b"a") == (b"\x10a", False)  # it was not: sent on, in order
    assert f.feed(b"\x10") == (b"", False) and f.feed(b"\x10") == (b"\x10\x10", False)  # ctrl-p twice: sent
    assert f.feed(b"x\x10\x11y") == (b"x\x10\x11y", False)  # inside pasted data: no detach
    assert f.feed(b"\x10") == (b"", False) and f.feed(b"") == (b"\x10", False)  # EOF flushes what was held
    assert EscapeFilter(b"\x10\x11").feed(b"\x10\x11") == (b"", True)  # two presses read at once


def test_run_it_detaches_with_ctrl_p_ctrl_q_and_attach_works_again(berth):
    name = f"det{os.getpid()}"
    t = Pty(berth, "run", "-it", "--name", name, "busybox", "sh")
    try:
        t.expect(b"# ")
        t.keys(b"echo one''two\r")
        t.expect(b"onetwo")
        t.keys(b"\x10", b"\x11")
        assert t.wait() == 0
        assert b"read escape sequence" in t.seen
        assert _running(berth, name)
        # attach again, type, and leave with other keys this time
        t = Pty(berth, "attach", "--detach-keys", "ctrl-a,x", name)
        t.keys(b"echo three''four\r")
        t.expect(b"threefour")
        t.keys(b"\x10", b"\r")  # ctrl-p is not a key of this attach: the shell gets it (history: again)
        assert wait_for(lambda: t.drain().count(b"threefour") == 2)
        t.keys(b"\x01", b"x")
        assert t.wait() == 0 and b"read escape sequence" in t.seen
        assert _running(berth, name)
        # and a last attach ends the shell: then attach ends with its code
        t = Pty(berth, "attach", name)
        t.keys(b"exit 3\r")
        assert t.wait() == 3
        assert wait_for(lambda: not _running(berth, name))
    finally:
        berth("rm", "-f", name)


def test_start_ai_detaches_and_the_container_runs_on(berth):
    name = f"sdet{os.getpid()}"
    berth.out("create", "-it", "--name", name, "busybox", "sh")
    try:
        t = Pty(berth, "start", "-ai", "--detach-keys", "ctrl-x,ctrl-y", name)
        t.keys(b"echo st''art\r")
        t.expect(b"start")
        t.keys(b"\x18", b"\x19")
        assert t.wait() == 0 and b"read escape sequence" in t.seen
        assert _running(berth, name)
    finally:
        berth("rm", "-f", name)


def _pipe_detach(berth, name: str, args: list[str], line: bytes, probe: str) -> tuple[int, bytes]:
    """``berth run -i --name NAME ARGS`` on a pipe: send ``line``, wait until the
    container wrote it (``/tmp/got`` reads ``probe``), then press ctrl-p, ctrl-q.
    Our end of the pipe stays open: only the keys can end the CLI."""
    p = subprocess.Popen([BERTH, "--root", str(berth.root), "run", "-i", "--name", name, *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(line)
        p.stdin.flush()
        # the line is in before the keys come: they arrive on a read of their own
        assert wait_for(lambda: berth("exec", name, "cat", "/tmp/got").stdout == probe)
        for k in (b"\x10", b"\x11"):
            p.stdin.write(k)
            p.stdin.flush()
        _, err = p.communicate(timeout=30)
        return p.returncode, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_run_i_on_a_pipe_detaches_and_keeps_what_was_typed(berth):
    name = f"pdet{os.getpid()}"
    try:
        code, err = _pipe_detach(berth, name, ["busybox", "sh", "-c", "cat > /tmp/got; exec sleep 600"],
                                 b"hello\n", "hello\n")
        assert code == 0 and err == b"read escape sequence\n", err
        assert _running(berth, name)
        assert berth.out("exec", name, "cat", "/tmp/got") == "hello\n"  # the keys were not sent on
    finally:
        berth("rm", "-f", name)


def test_run_rm_detached_is_removed_when_it_exits(berth):
    name = f"rmdet{os.getpid()}"
    try:
        code, _ = _pipe_detach(berth, name, ["--rm", "busybox", "sh", "-c",
                                             "read line; echo got $line > /tmp/got; exec sleep 600"], b"a\n", "got a\n")
        assert code == 0 and _running(berth, name)  # detached: --rm waits for its exit
        berth.out("kill", name)
        assert wait_for(lambda: name not in berth.out("ps", "-a", "--format", "{{.Names}}").split())
    finally:
        berth("rm", "-f", name)


def test_bad_detach_keys_are_one_line_and_make_nothing(berth):
    before = berth.ids()
    for args in (["run", "-d", "--detach-keys", "ctrl-1", "busybox", "sh"],
                 ["run", "-i", "--detach-keys", "ab", "busybox", "cat"],
                 ["start", "-ai", "--detach-keys", "ctrl-", "nothing"],
                 ["attach", "--detach-keys", "ctrl-P", "nothing"]):
        r = berth(*args, input="")
        assert r.returncode == 125 and r.stderr.count("\n") == 1 and "detach keys" in r.stderr, (args, r.stderr)
    assert berth.ids() == before
