"""``python -m syncd`` is the ``syncd`` command (the console script calls :func:`main` too).

``syncd run`` starts the daemon with CPython's allocator set to the system's malloc
(``PYTHONMALLOC=malloc``), by re-executing itself before the heavy imports unless the variable is set
already (the systemd unit sets it). With the default allocator (pymalloc) every 100,000-user sync left a few
survivors scattered over fresh 1 MiB arenas and the daemon's RSS grew 2-4 MB per run without end; glibc's
malloc_trim (after each run) hands back any free page, and RSS levels off after a few runs.
docs/adr/0044-daemon-memory.md has the figures.
"""

from __future__ import annotations

import os
import sys

ALLOCATOR = "malloc"


def main() -> None:
    if sys.argv[1:2] == ["run"] and "PYTHONMALLOC" not in os.environ:
        os.execve(  # noqa: S606 (this same program, its own arguments)
            sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, "PYTHONMALLOC": ALLOCATOR}
        )
    from syncd.cli import main as cli  # noqa: PLC0415 (after the re-exec: the imports are the slow part)

    cli()


if __name__ == "__main__":
    main()
