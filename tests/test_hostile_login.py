"""Issue #32's findings, one test each: a member cannot take over another's run or sweep, workspace internals
are never data, and a hostile value cannot flood the audit log. In-process: a confined JobManager and a Gate
with four logins (ada admin, alice and bob members, vic a viewer), on the tiny model.

The malformed calls (finding 5) are in tests/test_attack.py, which builds the app; the OpenAI-compatible
server's limits (finding 6) in tests/test_serve_limits.py.
"""

import json

import pytest
import yaml

from backend.access.audit import AuditLog
from backend.access.confine import Confinement
from backend.access.gate import Gate
from backend.access.roles import Role
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.paths import model_cache_dir
from backend.runs.job_manager import JobManager
from backend.sweeps.sweep_manager import SweepManager
from tests.helpers import wait_for

INTERNAL = "the studio's own files, not data"
ROLES = {"ada": Role.ADMIN, "alice": Role.MEMBER, "bob": Role.MEMBER, "vic": Role.VIEWER}


@pytest.fixture()
def studio(tmp_path, small_model, secret_dataset):
    """(gate, sweeps, tiny options): a confined studio whose one job slot a long run of ada's holds, so others queue."""
    workspace = tmp_path / "workspace"
    users = workspace / "users.txt"  # the owner keeps the logins beside the workspace's data: still never data
    workspace.mkdir()
    users.write_text("ada:pw:admin\nalice:pw\n")
    (workspace / "uploads" / "alice").mkdir(parents=True)
    (workspace / "uploads" / "alice" / "mine.jsonl").write_bytes(secret_dataset.read_bytes())
    jobs = JobManager(workspace, Confinement(workspace, [secret_dataset.parent], private=[users]))
    gate = Gate(jobs, ROLES, max_queued=5)
    sweeps = SweepManager(jobs)
    tiny = {"model": small_model, "dataset": str(secret_dataset), "val_size": 0, "save_steps": 0}
    gate.start("ada", {**tiny, "max_steps": 100_000, "output_dir": "ada-long"})
    # Running, not starting: a first job waits for the job server's imports (backend.runs.warm_jobs).
    wait_for(lambda: jobs.status("ada-long")["status"] == "running", timeout=120)
    yield gate, sweeps, tiny
    sweeps.shutdown()
    jobs.shutdown()


def refused(match: str, call, *args):
    with pytest.raises(TuneForgeError, match=match) as caught:
        call(*args)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def audit(gate) -> list[dict]:
    return [json.loads(line) for line in gate.audit.path.read_text().splitlines()]


def test_finding_1_a_member_cannot_take_over_a_queued_run_by_naming_it(studio):
    gate, _, tiny = studio
    jobs = gate.jobs
    run_a = gate.start("alice", {**tiny, "max_steps": 3, "output_dir": "alice-run", "learning_rate": 1e-3})
    assert jobs.status(run_a)["status"] == "queued"
    run_dir = jobs.run_dir(run_a)
    before = {name: (run_dir / name).read_bytes() for name in ("owner.json", "run.yaml")}
    for name in ("alice-run", str(run_dir), "ada-long"):  # by name, by path, and a running run
        refused("already names a run", gate.start, "bob", {**tiny, "max_steps": 1, "output_dir": name})
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert yaml.safe_load(before["run.yaml"])["learning_rate"] == 1e-3
    assert jobs.owner(run_a) == "alice" and jobs.queue() == [run_a]
    refusals = [line for line in audit(gate) if line["user"] == "bob" and line["action"] == "train_start"]
    assert len(refusals) == 3 and all(line["result"].startswith("refused: output_dir") for line in refusals)
    gate.abort("alice", run_a)  # still hers to abort
    assert jobs.status(run_a)["status"] == "aborted"


def test_finding_2_a_sweep_name_belongs_to_its_owner(studio):
    gate, sweeps, tiny = studio
    spec = {"base": {**tiny, "max_steps": 1, "val_size": 0.25}, "space": {"lora_rank": [2, 4]}, "name": "alice-sweep"}
    assert gate.start_sweep("alice", sweeps, spec) == "alice-sweep"
    gate.abort_sweep("alice", sweeps, "alice-sweep")
    refused("sweep alice-sweep belongs to alice", gate.start_sweep, "bob", sweeps, spec)
    refused("belongs to alice", gate.start_sweep, "bob", sweeps, {**spec, "space": {"lora_rank": [8]}})
    assert sweeps.owner("alice-sweep") == "alice"
    assert not [t for t in sweeps.status("alice-sweep")["trials"] if t.get("run_id") and
                gate.jobs.owner(t["run_id"]) == "bob"]  # fmt: skip
    assert gate.start_sweep("ada", sweeps, spec) == "alice-sweep"  # an admin may go on with it
    gate.abort_sweep("ada", sweeps, "alice-sweep")
    lines = [line for line in audit(gate) if line["action"].startswith("sweep_")]
    assert {(line["user"], line["action"], line["sweep_id"], line["result"][:7]) for line in lines} >= {
        ("alice", "sweep_start", "alice-sweep", "ok"),
        ("bob", "sweep_start", "alice-sweep", "refused"),
        ("ada", "sweep_start", "alice-sweep", "ok"),
        ("alice", "sweep_abort", "alice-sweep", "ok"),
    }


def test_finding_3_workspace_internals_are_never_data(studio, secret_dataset):
    gate, sweeps, tiny = studio
    jobs = gate.jobs
    workspace = jobs.workspace
    gate.start_sweep("alice", sweeps, {"base": {**tiny, "max_steps": 1, "val_size": 0.25}, "space": {"lora_rank": [2]}})
    run_a = gate.start("alice", {**tiny, "max_steps": 1})
    cache_file = next(p for p in model_cache_dir().rglob("*.json") if p.is_file())
    internals = [
        workspace / "audit.jsonl",
        workspace / "users.txt",
        workspace / "runs" / run_a / "run.yaml",
        workspace / "runs" / "ada-long" / "train.log",
        workspace / "sweeps" / "optuna.db",
        cache_file,
    ]
    for path in internals:
        assert path.exists(), path
        for key in ("dataset", "eval_dataset"):
            # The Dataset tab's check (any role may read a preview), and a start
            refused(INTERNAL, jobs.confinement.options, TrainConfig.from_dict({**tiny, key: str(path)}))
            refused(INTERNAL, gate.start, "bob", {**tiny, key: str(path), "max_steps": 1})
        if path.parent != workspace:
            refused(INTERNAL, jobs.confinement.dataset_dir, str(path.parent))
    # A model in another member's run folder is theirs; the model cache and one's own uploads stay usable.
    refused("belongs to alice", gate.check_options, gate.person("bob"), {"model": str(workspace / "runs" / run_a)})
    gate.check_options(gate.person("alice"), {"model": str(workspace / "runs" / run_a)})
    jobs.confinement.options(TrainConfig.from_dict({**tiny, "dataset": str(workspace / "uploads/alice/mine.jsonl")}))
    jobs.confinement.model(tiny["model"])


def test_finding_4_a_huge_value_cannot_flood_the_audit_log_and_its_view_pages(studio):
    gate, _, _ = studio
    size = gate.audit.path.stat().st_size
    for value in ("x" * (10 << 20), "é" * (1 << 20)):
        refused("no run named", gate.abort, "bob", value)
    assert gate.audit.path.stat().st_size - size < 2 * 2048  # at most 2 KB a line
    long_line = audit(gate)[-1]
    assert len(json.dumps(long_line)) < 2048 and "chars" in long_line["run_id"]

    log = AuditLog(gate.jobs.workspace / "paged")
    log.path.parent.mkdir()
    for i in range(1000):
        log.record("ada", "train_abort", "ok", f"run-{i}")
    newest = log.lines(10)
    assert [row["run_id"] for row in newest] == [f"run-{i}" for i in range(999, 989, -1)]
    assert [row["run_id"] for row in log.lines(10, page=3)] == [f"run-{i}" for i in range(979, 969, -1)]
    assert log.lines(10, page=101) == [] and len(log.lines(200, page=5)) == 200
    with open(log.path, "a") as f:
        f.write('{"half a line')  # a crash mid-write: skipped, not fatal
    assert log.lines(1)[0]["run_id"] == "run-999"
