"""Workers' log messages reach the parent, and a worker killed mid-message silences nobody else."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal

import pytest

from moprune.search.worker_logs import pipes, relayed, send_to

BIG = "x" * 1_000_000  # far over a pipe's buffer: a message is written in many pieces, so a kill lands mid-message


def _chatter(conn) -> None:
    """A worker that logs without pause until it is killed."""
    send_to(conn, 0)
    log = logging.getLogger("moprune.search.run")
    while True:
        log.info("%s", BIG)


def _says_done_when_told(conn, go) -> None:
    send_to(conn, 1)
    go.wait(120)
    logging.getLogger("moprune.search.run").warning("done")


class _Kept(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.slow  # spawns worker processes
def test_a_worker_killed_mid_message_leaves_the_others_messages_and_the_parent_running(monkeypatch):
    kept = _Kept()
    logger = logging.getLogger("moprune")
    logger.addHandler(kept)
    monkeypatch.setattr(logger, "level", logging.INFO)
    mp = multiprocessing.get_context("spawn")
    channels = pipes(mp, 2)
    go = mp.Event()
    procs = [mp.Process(target=_chatter, args=(channels[0][1],)),
             mp.Process(target=_says_done_when_told, args=(channels[1][1], go))]
    try:
        with relayed([reader for reader, _ in channels]):
            for p, (_, writer) in zip(procs, channels):
                p.start()
                writer.close()
            deadline = 120.0
            while not any(r.getMessage().endswith(BIG) for r in kept.records) and deadline > 0:
                procs[0].join(0.1)  # wait (without spinning) for the chatter's first whole message
                deadline -= 0.1
            os.kill(procs[0].pid, signal.SIGKILL)
            procs[0].join(60)
            go.set()
            procs[1].join(120)
        assert procs[0].exitcode == -signal.SIGKILL and procs[1].exitcode == 0
        messages = [r.getMessage() for r in kept.records]
        assert messages.count(f"worker 0: {BIG}") >= 1
        assert "worker 1: done" in messages, "the other worker's message arrived after the kill"
    finally:
        logger.removeHandler(kept)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
