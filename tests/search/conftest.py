"""Fixtures of the search tests: `moprune` subprocesses killed with their workers, and a private PostgreSQL server."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys

import pytest

from postgres_server import PostgresServer, find_bin_dir


@pytest.fixture
def spawn(session_cwd):
    """Start `python -m moprune ...` in its own process group (so its workers can be killed with it)."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "moprune", *args], cwd=session_cwd, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; in CI it must be there (.ci/run installs Debian's postgresql package)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres():
    """A running private PostgreSQL server, stopped and removed after the session."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _missing("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    if importlib.util.find_spec("psycopg2") is None:
        _missing("psycopg2 is not installed (pip install 'moprune[postgres]')")
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        pytest.fail(f"could not start PostgreSQL: {exc.cmd}: {exc.stderr or exc.stdout}")
    yield server
    server.stop()
