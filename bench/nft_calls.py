"""Benchmark: one nftables command through libnftables in-process vs exec'ing ``nft``.

Runs in a private network namespace (``unshare --net``) so no host rules are
touched. Prints medians and the ratio. Usage: ``.venv/bin/python bench/nft_calls.py [N]``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


def median_ms(fn, n: int) -> float:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    if os.environ.get("BERTH_BENCH_INNER") != "1":
        env = dict(os.environ, BERTH_BENCH_INNER="1")
        return subprocess.call(["unshare", "--net", sys.executable, __file__, str(n)], env=env)
    from berth._sys import nft
    from berth.engine.network.firewall import Firewall

    fw = Firewall("benchnft")
    fw.ensure()
    fw.add_network("0" * 64, "br-bench", "10.89.7.0/24", False)
    ours = median_ms(lambda: nft.run_json("list table ip benchnft"), n)
    theirs = median_ms(lambda: subprocess.run(["nft", "-j", "list", "table", "ip", "benchnft"],
                                              check=True, capture_output=True), n)
    print(f"list table (JSON): libnftables in-process {ours:.2f} ms, nft exec {theirs:.2f} ms, "
          f"ratio {ours / theirs:.2f} (median of {n})")
    add = "add rule ip benchnft publish tcp dport 1 dnat to 10.89.7.2:80 comment \"c:x\""
    ours = median_ms(lambda: nft.run(add), n)
    theirs = median_ms(lambda: subprocess.run(["nft", add], check=True, capture_output=True), n)
    print(f"add rule: libnftables in-process {ours:.2f} ms, nft exec {theirs:.2f} ms, "
          f"ratio {ours / theirs:.2f} (median of {n})")
    fw.delete_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
