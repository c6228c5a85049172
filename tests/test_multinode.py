"""Two machines, one run: two `python -m backend.train` launchers with the same YAML and node_rank 0 and 1,
meeting at node 0's rendezvous, one CPU process each over gloo.

Where the tests may create network namespaces (root, iproute2), each node runs in a namespace of its own,
joined by a veth pair, so node 1 reaches node 0 only over a network address, as across machines. Elsewhere
both nodes share the loopback, and the `machines` fixture's reason says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from backend.events import read_events
from tests.helpers import ROOT, free_port, is_live, wait_for, write_config

SUBNET = "10.238.38"


@dataclass
class Machine:
    """Where one node's command runs: a network namespace's prefix and its gloo interface, or the host."""

    name: str
    prefix: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Network:
    machines: tuple[Machine, Machine]
    master_addr: str
    isolated: bool
    namespaces: tuple[str, ...] = ()

    def processes(self) -> list[int]:
        """Pids left in the nodes' namespaces (none can hide there once the run is over)."""
        pids = []
        for ns in self.namespaces:
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
            pids += [int(p) for p in out.split() if is_live(int(p))]
        return pids


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


def _namespaces() -> Network | None:
    if os.geteuid() != 0 or not shutil.which("ip"):
        return None
    tag = os.getpid() % 100000
    names = (f"tf38-{tag}-0", f"tf38-{tag}-1")
    links = (f"tf{tag}n0", f"tf{tag}n1")
    try:
        for ns in names:
            _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for index, (ns, link) in enumerate(zip(names, links, strict=True)):
            _sh("ip", "link", "set", link, "netns", ns)
            _sh("ip", "-n", ns, "addr", "add", f"{SUBNET}.{index + 1}/24", "dev", link)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "link", "set", link, "up")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        _drop(names)
        return None
    machines = tuple(
        Machine(f"node {i}", ["ip", "netns", "exec", ns], {"GLOO_SOCKET_IFNAME": link})
        for i, (ns, link) in enumerate(zip(names, links, strict=True))
    )
    return Network(machines, f"{SUBNET}.1", True, names)  # type: ignore[arg-type]


def _drop(names) -> None:
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def machines():
    network = _namespaces()
    if network is None:
        print("network namespaces unavailable (not root, or no iproute2): both nodes on the loopback")
        network = Network((Machine("node 0"), Machine("node 1")), "127.0.0.1", False)
    yield network
    _drop(network.namespaces)


class Node:
    """One machine's `python -m backend.train --config node<R>.yaml`, as a user starts it in a terminal."""

    def __init__(self, machine: Machine, config: Path, logs: Path):
        attempt = len(list(logs.glob(f"{config.stem}-*.err")))
        self.out = open(logs / f"{config.stem}-{attempt}.out", "w+")
        self.err = open(logs / f"{config.stem}-{attempt}.err", "w+")
        self.proc = subprocess.Popen(
            [*machine.prefix, sys.executable, "-m", "backend.train", "--config", str(config)],
            cwd=ROOT,
            stdout=self.out,
            stderr=self.err,
            env={**os.environ, **machine.env},
            start_new_session=True,  # its own group: killing it is this machine going down
        )
        self.tree: set[int] = {self.proc.pid}

    def watch(self) -> None:
        """Remember every process the node started (torchrun, its rank): all must be gone at the end."""
        try:
            self.tree |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.watch()
        os.killpg(self.proc.pid, signal.SIGKILL)  # the launcher and torchrun; the rank dies with torchrun
        self.proc.wait()

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def stdout(self) -> str:
        self.out.seek(0)
        return self.out.read()


def two_nodes(machines: Network, tmp: Path, **options) -> tuple[Node, Node]:
    configs = [write_config(tmp / f"node{rank}.yaml", **options, node_rank=rank) for rank in (0, 1)]
    return Node(machines.machines[0], configs[0], tmp), Node(machines.machines[1], configs[1], tmp)


def options_for(model: str, dataset: Path, run_dir: Path, master_addr: str, **extra) -> dict:
    return {
        "model": model,
        "dataset": str(dataset),
        "output_dir": str(run_dir),
        "method": "lora",
        "per_device_train_batch_size": 2,
        "val_size": 0,
        "logging_steps": 1,
        "save_steps": 2,
        "save_total_limit": 0,  # keep every checkpoint: node 1 may die after several, and each is checked below
        "report_to": "none",
        "lr_scheduler_type": "constant",
        "learning_rate": 1e-3,
        "nnodes": 2,
        "nproc_per_node": 1,
        "master_addr": master_addr,
        "master_port": free_port(),
        **extra,
    }


def leftovers(nodes: list[Node], machines: Network) -> list[int]:
    return sorted({pid for node in nodes for pid in node.tree if is_live(pid)} | set(machines.processes()))


@pytest.fixture(scope="module")
def lost_node(machines, tmp_path_factory, secret_dataset, small_model):
    """A two-node run whose node 1 is killed after the first checkpoint; node 0's outcome, timed."""
    tmp = tmp_path_factory.mktemp("nodes")
    run_dir = tmp / "run"
    options = options_for(small_model, secret_dataset, run_dir, machines.master_addr, max_steps=100_000)
    node0, node1 = two_nodes(machines, tmp, **options)
    try:
        checkpoint = run_dir / "checkpoint-2" / "trainer_state.json"
        # A node that ends before the first checkpoint ends the wait at once; either way, the failure says
        # what each node printed.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: checkpoint.exists() or node0.proc.poll() is not None or node1.proc.poll() is not None, 240)
        assert checkpoint.exists(), f"node 0: {node0.stderr()[-1500:]}\nnode 1: {node1.stderr()[-1500:]}"
        node0.watch()
        node1.watch()
        assert len(node0.tree) >= 3 and len(node1.tree) >= 3, (node0.tree, node1.tree)  # launcher, torchrun, rank
        killed = time.monotonic()
        node1.kill()
        code = node0.wait(timeout=120)
        took = time.monotonic() - killed
    finally:
        for node in (node0, node1):
            if node.proc.poll() is None:
                node.kill()
    deadline = time.time() + 10
    while time.time() < deadline and leftovers([node0, node1], machines):
        time.sleep(0.2)
    print(f"node 0 ended {took:.1f} s after node 1 was killed ({'namespaces' if machines.isolated else 'loopback'})")
    return {"run_dir": run_dir, "code": code, "took": took, "nodes": (node0, node1), "options": options, "tmp": tmp}


def test_killing_node_1_fails_the_run_on_node_0_in_one_line_and_leaves_no_process(lost_node, machines):
    node0, node1 = lost_node["nodes"]
    assert lost_node["code"] != 0
    assert lost_node["took"] < 60, lost_node["took"]  # not torch's 30-minute collective timeout
    events = read_events(lost_node["run_dir"])
    end = events[-1]
    assert end["type"] == "end" and end["status"] == "failed", end
    assert end["error"].startswith("lost contact with a process of this 2-process run"), end["error"]
    assert "\n" not in end["error"] and "resume_from_checkpoint: last" in end["error"]
    if machines.isolated:
        assert f"at {SUBNET}.2 " in end["error"]  # node 1's address, as node 0 saw it go
    lines = node0.stderr().strip().splitlines()
    assert lines[-1] == f"error: {end['error']}", lines[-5:]  # the terminal's last line is the run's
    assert {line for line in lines if line.startswith("error:")} == {lines[-1]}
    assert not leftovers([node0, node1], machines)


def test_only_rank_0_wrote_the_run_and_each_checkpoint_once(lost_node):
    run_dir = lost_node["run_dir"]
    events = read_events(run_dir)
    types = [e["type"] for e in events]
    assert types.count("start") == 1 and types.count("end") == 1
    assert events[0]["world_size"] == 2
    steps = [e["step"] for e in events if e["type"] == "log"]
    assert steps == sorted(set(steps)) and steps[0] == 1  # each step once: one writer
    saved = [e["step"] for e in events if e["type"] == "checkpoint"]
    assert saved == sorted(set(saved)) and 2 in saved
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == [f"checkpoint-{s}" for s in sorted(saved)]
    config = (run_dir / "config.yaml").read_text()
    assert "node_rank: 0" in config  # node 1 did not write over node 0's record of the run
    assert not [p for p in run_dir.rglob("*.tmp")]
    assert (run_dir / "ranks" / "rank-1.log").exists()


def test_the_same_two_commands_resume_the_run_after_the_lost_node(lost_node, machines):
    run_dir, tmp = lost_node["run_dir"], lost_node["tmp"]
    resumed_from = max(int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*"))
    options = {**lost_node["options"], "max_steps": resumed_from + 2, "resume_from_checkpoint": "last"}
    options["master_port"] = free_port()
    node0, node1 = two_nodes(machines, tmp, **options)
    try:
        assert node0.wait(timeout=240) == 0, node0.stderr()[-3000:]
        assert node1.wait(timeout=60) == 0, node1.stderr()[-3000:]
    finally:
        for node in (node0, node1):
            if node.proc.poll() is None:
                node.kill()
    events = read_events(run_dir)
    starts = [e for e in events if e["type"] == "start"]
    assert len(starts) == 2 and starts[-1]["resumed_from"] == resumed_from
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed"
    after = [e["step"] for e in events[events.index(starts[-1]) :] if e["type"] == "log"]
    assert after == [resumed_from + 1, resumed_from + 2]
    assert (run_dir / f"checkpoint-{resumed_from + 2}").is_dir() or (run_dir / "adapter_model.safetensors").exists()
    assert not leftovers([node0, node1], machines)


def test_a_rendezvous_that_never_fills_fails_node_0_in_one_line_within_its_timeout(
    machines, tmp_path, secret_dataset, small_model
):
    options = options_for(small_model, secret_dataset, tmp_path / "run", machines.master_addr, max_steps=2)
    config = write_config(tmp_path / "node0.yaml", **options, node_rank=0, rdzv_timeout=10)
    node0 = Node(machines.machines[0], config, tmp_path)  # node 1 never comes
    try:
        started = time.monotonic()
        code = node0.wait(timeout=120)
        took = time.monotonic() - started
    finally:
        if node0.proc.poll() is None:
            node0.kill()
    assert code != 0 and 10 <= took < 60, (code, took)
    end = read_events(tmp_path / "run")[-1]
    assert end["status"] == "failed" and end["error"] == (
        f"the 2 nodes did not all meet at {machines.master_addr}:{options['master_port']} within rdzv_timeout=10 s: "
        "start the same config with node_rank 1 to 1 on the other machines, and check that they reach that "
        "address and port"
    )
    assert node0.stderr().strip().splitlines()[-1] == f"error: {end['error']}"
    assert not leftovers([node0], machines)
