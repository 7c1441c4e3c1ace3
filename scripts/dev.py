"""`make dev` after the services are up: migrate, seed the demo tenant, then run daphne, an
answer runner (chat answers), a Celery worker and Celery beat in the foreground. Ctrl-C (or
SIGTERM) stops all four."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def manage(*args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, check=True)


def main() -> int:
    manage("migrate_schemas", "--executor", "standard", "-v", "0")
    manage("seed_demo")
    port = os.environ.get("PORT", "8000")
    bind = os.environ.get("BIND", "127.0.0.1")
    commands = {
        "web": [PY, "-m", "daphne", "-b", bind, "-p", port, "saas.asgi:application"],
        "answers": [PY, "manage.py", "run_answers"],
        "worker": [PY, "-m", "celery", "-A", "saas", "worker", "-l", "INFO", "--concurrency", "2"]
        + ["-Q", "interactive,ingestion,bulk,billing"],
        "beat": [PY, "-m", "celery", "-A", "saas", "beat", "-l", "INFO"]
        + ["--schedule", str(ROOT / ".devdata" / "celerybeat-schedule")],
    }
    processes = {name: subprocess.Popen(argv, cwd=ROOT) for name, argv in commands.items()}
    print(f"[dev] Atrium on http://localhost:{port}/ (demo: http://demo.localhost:{port}/)")
    print("[dev] Ctrl-C stops web, answers, worker and beat", flush=True)

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"[dev] {name} exited with {process.returncode}; stopping the others")
                exit_code = process.returncode or 1
                stopping = True
                break
        time.sleep(0.3)
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 15
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
