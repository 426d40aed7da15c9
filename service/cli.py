"""The service's commands of `anchor-opt` (an `anchor_opt.commands` entry point trainer.cli loads):

    anchor-opt serve [--host H] [--port P]          the API (uvicorn), settings from ANCHOR_OPT_*
    anchor-opt submit JOB.yaml [--set k=v] [--wait] [--plot PNG] [--idempotency-key K]
    anchor-opt status ID | anchors ID [--plot PNG] | cancel ID | jobs [--state S]
    anchor-opt token                                 a new API token and the hash to configure
    anchor-opt demo [--out DIR]                      serve, submit the demo job, follow it, save its picture

The client commands talk to ANCHOR_OPT_API_URL (default http://127.0.0.1:8000) with the bearer
token in ANCHOR_OPT_API_TOKEN. None of this imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from service.job_commands import add_job_commands
from service.watch import console, follow, progress_info
from trainer.artifacts.terminal import snapshot_anchors

out = Console()


def _client(args: argparse.Namespace):
    from service.client import ApiClient

    # The command line's settings, read here once: flags first, then the environment.
    url = args.url or os.environ.get("ANCHOR_OPT_API_URL")
    return ApiClient(url, args.token or os.environ.get("ANCHOR_OPT_API_TOKEN"))


# --- serve -------------------------------------------------------------------------------------------


def _port_in_use(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on now, or None when it can (checked by binding it, as
    uvicorn will, and letting it go)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import load_settings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = load_settings(**overrides)
    if settings.open_mode:
        console.print(f"[yellow]no API tokens configured: open to anyone on {settings.host} (loopback only)")
    busy = _port_in_use(settings.host, settings.port)
    if busy:  # before anything starts (the local Ray head) or says where the API is
        console.print(
            f"[red]error:[/red] cannot listen on {settings.host}:{settings.port}: {busy} (another "
            "anchor-opt serve? give --port or ANCHOR_OPT_PORT)",
            soft_wrap=True,
        )
        return 2
    where = f"http://{settings.host}:{settings.port}"
    console.print(f"anchor-opt API on {where} (docs at {where}/docs), job store {settings.store_uri}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    if settings.ray_address is None:  # the embedded head outlives the service: say so, or stop it
        if args.stop_ray:
            _stop_head(settings.ray_temp_dir)
        else:
            _say_what_stays(settings.ray_temp_dir)
    return 0


def _say_what_stays(temp_dir: str | None) -> None:
    from service.ray_head import LocalRayHead

    head = LocalRayHead.running(temp_dir)
    if head is not None:
        console.print(
            f"the local Ray head keeps running (process group {head['pgid']}, job server and dashboard "
            f"on {head['url']}), so that running jobs go on and the next `anchor-opt serve` reuses it; "
            "stop it with `anchor-opt ray stop`, or serve with --stop-ray",
            soft_wrap=True,
            markup=False,
        )


def _stop_head(temp_dir: str | None) -> bool:
    """Stops the head this service started (recorded in `temp_dir`); never another Ray."""
    from service.ray_head import LocalRayHead

    head = LocalRayHead.running(temp_dir)
    if head is None or not LocalRayHead.stop(temp_dir):
        console.print(
            "no Ray head started by anchor-opt serve runs here: nothing to stop (another Ray on this machine "
            "is not ours to stop)",
            soft_wrap=True,
        )
        return False
    console.print(
        f"stopped the local Ray head (process group {head['pgid']}, {head['url']}); jobs on it ended"
    )
    return True


def cmd_ray_stop(args: argparse.Namespace) -> int:
    from service.settings import load_settings

    settings = load_settings()
    if settings.ray_address:
        raise ValueError(
            f"this service uses the Ray cluster at {settings.ray_address} (ANCHOR_OPT_RAY_ADDRESS): "
            "anchor-opt stops only the local head it started itself"
        )
    _stop_head(settings.ray_temp_dir)
    return 0


# --- client commands ---------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    from trainer.config_files import read_config, validate_config
    from trainer.contract.spec import JobSpec

    data = read_config(args.spec, args.set)  # read once, through the safe loader (trainer.safe_yaml)
    validate_config(data, JobSpec, args.spec, args.set)  # before sending: each error names its file or --set
    with _client(args) as api:
        job = api.submit(data, idempotency_key=args.idempotency_key)
        console.print(f"job [bold]{job['id']}[/bold] {job['state']}  ({api.url}{job['links']['self']})")
        for warning in job.get("warnings") or ():
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
        sys.stdout.write(job["id"] + "\n")  # stdout: the id alone, for scripts
        if not args.wait:
            return 0
        return follow(api, job["id"], args.plot)


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as api:
        job = api.job(args.job_id)
    if args.json:
        sys.stdout.write(json.dumps(job, indent=1) + "\n")
        return 0
    p = job["progress"]
    out.print(f"[bold]{job['id']}[/bold] {job.get('name') or ''}  {job['state']}")
    if p["total_steps"]:
        eta = f", eta {p['eta_s']:.0f} s" if p.get("eta_s") and job["state"] == "RUNNING" else ""
        line = progress_info(p).strip()
        out.print(f"step {p['step']}/{p['total_steps']}, {line}{eta}, attempt {p['attempt']}")
    if job["error"]:
        out.print(f"[red]error:[/red] {escape(job['error'])}", soft_wrap=True)
    for name, url in job["artifacts"].items():
        out.print(f"  {name}: {url}")
    return 0


def cmd_anchors(args: argparse.Namespace) -> int:
    with _client(args) as api:
        snapshots = api.anchors(args.job_id)
        if not snapshots:
            console.print(f"job {args.job_id} has no anchor snapshot yet")
            return 1
        out.print(snapshot_anchors(snapshots))
        if args.plot:
            Path(args.plot).write_bytes(api.plot(args.job_id))
            console.print(f"anchors picture saved to {args.plot}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as api:
        job = api.cancel(args.job_id)
    out.print(f"{job['id']} {job['state']}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as api:
        jobs = list(api.jobs(args.state))
    table = Table(title="jobs, newest first")
    # Ids whole, however narrow the terminal (a cut id cannot be copied); names give way first.
    table.add_column("id", no_wrap=True, min_width=max((len(j["id"]) for j in jobs), default=2))
    table.add_column("name", overflow="ellipsis", no_wrap=True)
    for column in ("state", "step", "submitted"):
        table.add_column(column, no_wrap=True)
    for job in jobs:
        p = job["progress"]
        step = f"{p['step']}/{p['total_steps']}" if p["total_steps"] else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job["submitted_at"]))
        table.add_row(job["id"], job.get("name") or "", job["state"], step, when)
    out.print(table)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from service.auth import hash_token, new_token
    from service.settings import TokenEntry

    token = new_token()
    entry = {"tenant": args.tenant, "sha256": hash_token(token)} | ({"name": args.name} if args.name else {})
    try:  # the entry the service will read: refuse here what it would refuse at start
        TokenEntry.model_validate(entry)
    except ValueError as exc:
        fields = "; ".join(f"--{e['loc'][0]} {e['input']!r}: {e['msg']}" for e in exc.errors())
        console.print(f"[red]error:[/red] {escape(fields)}", soft_wrap=True)
        return 2
    console.print("give the client the token (ANCHOR_OPT_API_TOKEN); configure the service with the entry:")
    sys.stdout.write(f"token: {token}\nentry: {json.dumps(entry)}\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo

    return run_demo(Path(args.out), args.spec)


# --- parser ------------------------------------------------------------------------------------------


def add_commands(sub) -> None:
    """Adds the service's commands to `anchor-opt`'s subcommand parsers."""
    p = sub.add_parser("serve", help="run the job API (FastAPI on uvicorn); settings from ANCHOR_OPT_*")
    p.add_argument("--host", help="interface to bind (default ANCHOR_OPT_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default ANCHOR_OPT_PORT, else 8000)")
    p.add_argument(
        "--stop-ray",
        action="store_true",
        help="on exit, stop the local Ray head this service started (jobs on it end); by default it keeps "
        "running for the next serve",
    )
    p.set_defaults(func=cmd_serve)
    ray = sub.add_parser("ray", help="the local Ray head anchor-opt serve started")
    ray_sub = ray.add_subparsers(dest="ray_command", required=True)
    stop = ray_sub.add_parser(
        "stop", help="stop the local Ray head anchor-opt serve started (never another Ray)"
    )
    stop.set_defaults(func=cmd_ray_stop)

    def client_parser(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--url", help="the API (default ANCHOR_OPT_API_URL, else http://127.0.0.1:8000)")
        p.add_argument("--token", help="bearer token (default ANCHOR_OPT_API_TOKEN)")
        return p

    p = client_parser("submit", "submit a job spec (YAML) to the API")
    p.add_argument("spec", help="job spec: a train config plus `name` and `resources`")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--wait", action="store_true", help="follow the job to its end: a bar and the anchors")
    p.add_argument("--plot", metavar="PNG", help="with --wait: save the anchors picture here at the end")
    p.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job")
    p.set_defaults(func=cmd_submit)

    p = client_parser("status", "a job's state, progress, error and artifacts")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true", help="the whole job document as JSON")
    p.set_defaults(func=cmd_status)

    p = client_parser("anchors", "a job's anchors: where they started and where they are now")
    p.add_argument("job_id")
    p.add_argument("--plot", metavar="PNG", help="also save the anchors picture (Figure 2 style)")
    p.set_defaults(func=cmd_anchors)

    p = client_parser("cancel", "cancel a job (stops its Ray job)")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_cancel)

    def with_client(command):
        def run(args: argparse.Namespace) -> int:
            with _client(args) as api:
                return command(args, api)

        return run

    add_job_commands(client_parser, with_client)

    p = client_parser("jobs", "list your jobs, newest first")
    p.add_argument("--state", choices=("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"))
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("token", help="make a new API token and the entry to configure the service with")
    p.add_argument("--tenant", default="default", help="whose jobs the token acts on (default: default)")
    p.add_argument("--name", help="who holds the token, for people and logs")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("demo", help="start the service, submit the demo job, follow it, save its picture")
    p.add_argument("--out", default="runs/demo", help="where the job store and the picture go")
    p.add_argument("--spec", default=None, help="job spec (default: the built-in demo config)")
    p.set_defaults(func=cmd_demo)
