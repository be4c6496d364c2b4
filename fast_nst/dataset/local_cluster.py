"""A Ray cluster of several nodes on this machine, loopback only, for trying `ray_address=` without
a second machine (benchmarks/bench_dataset.py --cluster measures with it):

    with local_cluster(nodes=2, cpus_per_node=2, port=6390) as address:
        ... python -m fast_nst.dataset ... ray_address=<address>

Each node is its own `ray start --block` process in a session of its own (a head, then nodes
joining it by address); leaving the block stops exactly those sessions' processes, by id, so
nothing else on the machine (another Ray included) is touched. `kill_session` is the same
clean-up for any process started with `start_new_session=True`.

The nodes use Ray's token authentication (the token in ~/.ray/auth_token); a driver joining them
runs with RAY_AUTH_MODE=token in its environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes whose session id is `sid`."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getsid(int(d.name)) == sid and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(d.name))
        except (ProcessLookupError, PermissionError, FileNotFoundError, IndexError):
            pass
    return pids


def kill_session(sid: int, timeout: float = 60.0) -> None:
    """SIGKILL every process of session `sid` until none is left (a dying raylet may still start
    a worker), or raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while pids := session_processes(sid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of session {sid} survive SIGKILL: {pids}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def _alive_nodes(address: str, env: dict) -> int:
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='{address}', logging_level='ERROR'); "
                            "print(sum(n['Alive'] for n in ray.nodes()))"], env=env, capture_output=True, text=True)
    last = probe.stdout.strip().splitlines()[-1:] or ["0"]
    return int(last[0]) if last[0].isdigit() else 0


@contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 2, port: int = 6390, object_store_mb: int = 300,
                  log_dir: Path | None = None, timeout: float = 600.0) -> Iterator[str]:
    """Yields the head's address (127.0.0.1:port) once `nodes` nodes are alive."""
    ray = str(Path(sys.executable).with_name("ray"))
    env = dict(os.environ, RAY_AUTH_MODE="token")  # the token in ~/.ray/auth_token; drivers need the same
    common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}", "--block", "--disable-usage-stats",
              f"--object-store-memory={object_store_mb * 2**20}"]
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def start(args: list[str], name: str) -> None:
        out = open(log_dir / f"{name}.log", "w") if log_dir else subprocess.DEVNULL
        procs.append(subprocess.Popen([ray, "start", *args, *common], env=env, start_new_session=True,
                                      stdout=out, stderr=subprocess.STDOUT))

    try:
        start(["--head", f"--port={port}", "--include-dashboard=false"], "ray_head")
        deadline = time.monotonic() + timeout
        while _alive_nodes(address, env) < 1:  # the head's GCS answers before a node joins it
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError(f"the Ray head on {address} did not start (log: {log_dir})")
            time.sleep(3)
        for i in range(1, nodes):
            start([f"--address={address}"], f"ray_node{i + 1}")
        while _alive_nodes(address, env) < nodes:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the {nodes}-node cluster on {address} did not come up (logs: {log_dir})")
            time.sleep(3)
        yield address
    finally:
        for p in reversed(procs):  # nodes first, the head last
            p.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            kill_session(p.pid)
