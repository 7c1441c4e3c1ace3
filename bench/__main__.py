"""python -m bench [name ...]: run the named benchmarks (all when none is named), each in its
own process so their Django setups and scratch databases never mix."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

BENCHMARKS = ["provisioning", "gateway", "api", "embeddings", "vectors", "streams", "retrieval"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    if len(names) == 1:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saas.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        importlib.import_module(f"bench.{names[0]}").run()
        return 0
    failed = [n for n in names if subprocess.run([sys.executable, "-m", "bench", n]).returncode]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
