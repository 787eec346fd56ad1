"""A worker or scheduler process stops on SIGTERM: cleanly, or at the latest after the shutdown timeout.

Each case runs ``_until_stopped`` (what ``naboom worker`` and ``naboom scheduler`` run) in a
child process on the embedded defaults (SQLite, in-memory broker), with a ``run`` that either
ends when cancelled or ignores the cancellation, as a receiver stuck on a Redis read did.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_CHILD = textwrap.dedent(
    """
    import asyncio, logging, sys
    from naboom.background.runner import _until_stopped
    from naboom.settings import Settings

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    stubborn = sys.argv[1] == "stubborn"

    async def run(work):
        print("ready", flush=True)
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not stubborn:
                    raise

    asyncio.run(_until_stopped(run, Settings.from_env(), worker=True))
    print("returned", flush=True)
    """
)


def _child(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NABOOM_")},
        "NABOOM_VAR_DIR": str(tmp_path),
        "NABOOM_SHUTDOWN_TIMEOUT_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("mode", ["clean", "stubborn"])
def test_sigterm_stops_the_process_cleanly_or_after_the_shutdown_timeout(tmp_path: Path, mode: str) -> None:
    proc = _child(tmp_path, mode)
    proc.send_signal(signal.SIGTERM)
    # Far beyond the 1 s timeout: a hang fails here instead of stalling the suite.
    out, err = proc.communicate(timeout=60)
    if mode == "clean":
        assert proc.returncode == 0, err
        assert out == "returned\n"
        assert "did not stop" not in err
    else:
        assert proc.returncode == 1, err
        assert out == ""
        assert "did not stop within 1 s; exiting anyway" in err
