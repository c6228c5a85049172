"""Start the TuneForge web UI: `python launch.py [--workspace DIR] [--port 7860]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the imports themselves wait until after --help
    import gradio as gr

    from backend.runs.job_manager import JobManager
    from webui.access import Login


def main() -> None:
    from backend.cycle_collector import hold, settle

    args = parse_arguments()
    prepare_process()
    hold()
    studio = build_studio(args)
    settle()  # gradio and the page's ~600,000 objects live as long as the app: out of every later collection
    serve(args, *studio)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="TuneForge: fine-tune language models from your browser.",
        epilog="Logins: with --auth or --auth-file, failed logins are limited to 5 a minute per client and 30 a "
        "minute overall (then HTTP 429). There is no TLS: for access beyond this machine, put a reverse proxy "
        "with HTTPS in front, or use --share (its link is HTTPS).",
    )
    parser.add_argument("--workspace", default="workspace", help="folder for runs and uploads (default: ./workspace)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1); 0.0.0.0 without a login prints a warning",
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument(
        "--share",
        action="store_true",
        help="also open a public Gradio link; never without a login: with no --auth, a strong password for user "
        "'tuneforge' is generated and printed once. Offline (no tunnel), the app says so in one line and keeps "
        "serving locally",
    )
    parser.add_argument(
        "--auth", metavar="USER:PASS[:ROLE]", help="require this login (an admin unless a role is given)"
    )
    parser.add_argument(
        "--auth-file",
        metavar="FILE",
        help="require a login from FILE: one user:password[:role] a line, role admin, member (the default) or "
        "viewer; # comments",
    )
    parser.add_argument(
        "--allow-remote-code",
        action="store_true",
        help="with logins, let admins start runs that run code shipped with a model (trust_remote_code); "
        "without this flag no login can",
    )
    parser.add_argument(
        "--max-queued-per-person",
        type=int,
        default=3,
        metavar="N",
        help="with logins, how many runs one member may have waiting in the queue (default: 3)",
    )
    parser.add_argument("--max-upload-size", default="1gb", help="largest accepted upload, e.g. 200mb (default: 1gb)")
    parser.add_argument(
        "--allow-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose datasets, models and adapters browser and API users may read, besides the workspace, "
        "the model cache and the bundled assets (repeatable; nothing else on disk can be named)",
    )
    parser.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="keep sweeps in this Optuna storage (e.g. postgresql://user@host/db), to share studies with other "
        "machines; default: the workspace's sweeps/optuna.db",
    )
    return parser.parse_args(argv)


def prepare_process() -> None:
    """What this process needs before anything of the app is imported or built."""
    from webui.gradio_import import skip_stub_rewrite

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # After every queued event gradio recomputes its API page's timings per endpoint, a pandas groupby of the
    # last 10,000 events: 5 ms each at 1,000 events, 14 at 10,000 (the Runs tab's story spent 5 CPU-s on it).
    # Every 20th event keeps that page current for a twentieth of the cost.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "20")
    skip_stub_rewrite()  # a quarter of the app's start: see webui/gradio_import.py
    # A chat generating in this process holds the GIL between its torch ops; a status read waiting
    # for it would wait up to the switch interval at each hand-over (5 ms by default, several per
    # request). 0.5 ms keeps status reads quick beside a chat (bench/load_clients.py).
    sys.setswitchinterval(0.0005)


def build_studio(args: argparse.Namespace) -> tuple[gr.Blocks, JobManager, list[Login]]:
    """The page, its job manager and its logins, from the command line; a bad argument exits with one line."""
    # Imported late so that --help answers at once.
    from backend.access.confine import Confinement
    from backend.access.gate import Gate
    from backend.errors import TuneForgeError
    from backend.paths import PROJECT_ROOT
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine
    from backend.sweeps.sweep_manager import SweepManager
    from webui.access import credentials, roles_of
    from webui.app import build_app

    try:
        logins, notes = credentials(args.auth, args.auth_file, args.share, args.host)
    except TuneForgeError as exc:
        raise SystemExit(f"error: {exc}") from None
    for note in notes:
        print(note, flush=True)
    if args.max_queued_per_person < 1:
        raise SystemExit("error: --max-queued-per-person must be at least 1")
    workspace, allowed = folders(args)
    # Jobs read TUNEFORGE_WORKSPACE for their own default output folder.
    os.environ["TUNEFORGE_WORKSPACE"] = str(workspace)
    # Jobs run in the project folder; so does the app, so a relative path means the same file to both
    # and the one the confinement checked is the one the job reads.
    os.chdir(PROJECT_ROOT)
    private = [args.auth_file] if args.auth_file else []  # the logins are never data, wherever they are kept
    jobs = JobManager(workspace, Confinement(workspace, allowed, private=private))
    try:
        sweeps = SweepManager(jobs, args.optuna_storage)  # picks up the sweeps a killed app was running
    except TuneForgeError as exc:
        raise SystemExit(f"error: {exc}") from None
    gate = Gate(jobs, roles_of(logins), args.allow_remote_code, args.max_queued_per_person)
    app = build_app(jobs, ChatEngine(jobs), sweeps, gate)
    print(f"TuneForge workspace: {workspace}" + "".join(f"\nreadable folder: {d}" for d in allowed))
    return app, jobs, logins


def folders(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The workspace and the --allow-dir folders, resolved; a folder that is not one exits with one line."""
    workspace = Path(args.workspace).expanduser().resolve()
    allowed = [Path(d).expanduser().resolve() for d in args.allow_dir]
    for folder in allowed:
        if not folder.is_dir():
            raise SystemExit(f"error: --allow-dir {folder} is not a folder")
    return workspace, allowed


def serve(args: argparse.Namespace, app: gr.Blocks, jobs: JobManager, logins: list[Login]) -> None:
    """Serve the page until the process is stopped, with the job server warming up beside it."""
    from starlette.middleware import Middleware

    from webui.app import PAGE
    from webui.idle_cost import FrameScript, quiet_queue
    from webui.login_limit import LoginLimiter

    quiet_queue(app.queue(default_concurrency_limit=4))
    app.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        **PAGE,
        footer_links=["api"],
        # Gradio's run history keeps every public call's inputs and outputs in the browser's localStorage (the
        # whole form, charts, tables, chats), re-read and re-written on every message: most of the page's script
        # time, and a record of a shared studio's work left in whichever browser used it. The Runs tab is ours.
        run_history=False,
        max_file_size=args.max_upload_size,
        auth=logins or None,
        # Gradio's form login has no limit of its own; a public link's password must not be guessable. Its page
        # goes out with the script that keeps the idle page from drawing frames (webui/idle_cost.py).
        app_kwargs={"middleware": [Middleware(LoginLimiter), Middleware(FrameScript)]},
        prevent_thread_lock=True,
    )
    # The job server imports torch & co. now, so that the first Start trains at once. After the launch,
    # which sets Gradio's flags in the environment the server takes.
    jobs.warm_up()
    if args.share and not app.share_url:
        print(
            f"--share: no public link (offline, or the share tunnel could not start); "
            f"serving locally only at http://{args.host}:{app.server_port}",
            flush=True,
        )
    app.block_thread()


if __name__ == "__main__":
    main()
