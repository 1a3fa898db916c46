"""A single-machine Ray cluster on loopback, for tests, benchmarks and trying `--engine ray`.

    with LoopbackRayCluster(num_cpus=2) as cluster:
        grade_batch(..., engine="ray", ray_address=cluster.address)

`ray start --head --block` runs in a session of its own, with every address pinned to
127.0.0.1 (see grader.batch.ray_engine on `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`), its own
temporary folder and free ports for everything that would otherwise take a fixed one (the
client server's 10001, the dashboard's 8265, the agent's 52365), so it neither reaches another
address nor collides with another cluster on the host. Stopping it stops only its own processes:
SIGTERM to `ray start` (which shuts its children down), then SIGKILL to whatever is left in its
session. Never `ray stop`, which would stop every Ray cluster of the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["LoopbackRayCluster", "free_port"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) != sid:
                    continue
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    state = fh.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != b"Z":  # a zombie is already dead: only its parent can reap it
                pids.append(int(entry))
    return pids


class LoopbackRayCluster:
    """`ray start --head` on 127.0.0.1 with `num_cpus` CPUs and `num_gpus` GPUs; a context manager.

    `num_gpus` is what the cluster declares, not what the machine has: on a machine without a
    GPU it still makes Ray schedule GPU tasks and hand each its GPU ids (what the tests check)."""

    def __init__(self, num_cpus: int = 2, *, num_gpus: int = 0, start_timeout_s: float = 90.0):
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        # Short: Ray's unix sockets live under it and a socket path has at most 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="gr-ray-", dir="/tmp"))
        self.proc: subprocess.Popen | None = None
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")

    def start(self) -> "LoopbackRayCluster":
        ray_bin = Path(sys.executable).with_name("ray")
        argv = [str(ray_bin) if ray_bin.exists() else "ray", "start", "--head", "--block",
                "--node-ip-address", LOOPBACK, "--port", str(self.port),
                "--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus),
                "--temp-dir", str(self.temp_dir), "--include-dashboard=false",
                "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats"]
        log = open(self.temp_dir / "ray-start.log", "wb")
        self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Ready when the GCS answers on its port and the raylet's socket exists (what a driver
        needs to connect); cheaper than polling `ray status`, which imports Ray each time."""
        deadline = time.monotonic() + self.start_timeout_s
        raylet_socket = self.temp_dir / "session_latest" / "sockets" / "raylet"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}: {self.log_tail()}")
            if raylet_socket.exists() and "Ray runtime started" in self._log():
                try:
                    with socket.create_connection((LOOPBACK, self.port), timeout=1.0):
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Ray cluster at {self.address} did not start in {self.start_timeout_s:g} s: "
                           f"{self.log_tail()}")

    def _log(self) -> str:
        try:
            return (self.temp_dir / "ray-start.log").read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        return self._log()[-2000:]

    def pids(self) -> list[int]:
        """Every process of this cluster (they all share the session of `ray start`)."""
        return _session_pids(self.proc.pid) if self.proc is not None else []

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc is None:
            return
        sid = self.proc.pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + grace_s
        while (left := [p for p in _session_pids(sid) if p != os.getpid()]) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LoopbackRayCluster":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
