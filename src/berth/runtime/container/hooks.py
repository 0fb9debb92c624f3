"""OCI hooks: run with the container's state JSON on stdin, with timeouts."""

import os

from berth.errors import RuntimeFailure
from berth.runtime import jsonio


def run(kind: str, hooks: list[dict], state: dict, fatal: bool = True) -> None:
    """Run each hook of ``kind`` in order; a failure is fatal for the create/start ones.

    Raises:
        RuntimeFailure: a hook exited non-zero, timed out or could not start
            (only when ``fatal``; otherwise one warning line on stderr).
    """
    if not hooks:
        return
    import subprocess

    data = jsonio.dumps(state).encode()
    for h in hooks:
        args = h.get("args") or [h["path"]]
        env = dict(e.split("=", 1) for e in h.get("env", ()))
        try:
            r = subprocess.run(args, executable=h["path"], input=data, env=env,
                               timeout=h.get("timeout"), capture_output=True)
            err = None if r.returncode == 0 else f"exit status {r.returncode}: {r.stderr.decode(errors='replace').strip()[:200]}"
        except subprocess.TimeoutExpired:
            err = f"timed out after {h['timeout']} s"
        except OSError as e:
            err = e.strerror or str(e)
        if err:
            msg = f"{kind} hook {h['path']}: {err}"
            if fatal:
                raise RuntimeFailure(msg)
            os.write(2, f"berth-runtime: warning: {msg}\n".encode())
