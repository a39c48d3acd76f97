"""Fixtures of the search tests: `moprune` subprocesses killed with their workers, and a private PostgreSQL server."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from postgres_server import PostgresServer, find_bin_dir

TESTS = Path(__file__).resolve().parents[1]


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture
def spawn(session_cwd):
    """Start `python -m moprune ...` in its own process group (so its workers can be killed with it).

    It takes Ctrl-C and SIGTERM as from a terminal even where this test process ignores them (a test run started in
    the background of a script ignores SIGINT, and an ignored signal is inherited: moprune would never see it).
    """
    started: list[subprocess.Popen] = []
    # tests/ on the path, as pytest has it: specs may name tests/tiny_models.py's factories (helpers.SMALL_CNN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    ignored = any(signal.getsignal(sig) is signal.SIG_IGN for sig in (signal.SIGINT, signal.SIGTERM))

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "moprune", *args], cwd=session_cwd, text=True, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_default_signals if ignored else None)
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
