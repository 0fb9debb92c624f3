"""The README's first command: berth's main job on the built-in busybox image.

Until the engine lands this runs a busybox bundle through ``berth-runtime``.
"""

import sys


def main() -> int:
    sys.stderr.write("berth demo: nothing to run yet\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
