"""Following a job from the command line: a live bar and anchors table over the API until it ends
(`anchor-opt submit --wait`, `anchor-opt demo`). No torch."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import Progress

from trainer.artifacts.terminal import COLUMNS, progress_line, snapshot_anchors

console = Console(stderr=True)
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")


def progress_info(p: dict) -> str:
    """A job's progress (the API's `progress`) as the one progress line."""
    return progress_line(
        p.get("phase"), epoch=p["epoch"], epochs=p["epochs"], images_per_s=p.get("images_per_s")
    )


def follow(api, job_id: str, plot: str | None = None) -> int:
    """A live bar and anchors table until the job ends; exit status 0 if it SUCCEEDED, 1 otherwise."""
    progress = Progress(*COLUMNS, console=console)
    task = progress.add_task(f"job {job_id}", total=None, info="queued")
    snapshots: list[dict] = []
    with Live(Group(progress), console=console, refresh_per_second=4) as live:
        while True:
            job = api.job(job_id)
            since = snapshots[-1]["step"] if snapshots else None
            snapshots += api.anchors(job_id, since_step=since)
            p = job["progress"]
            info = (
                job["state"].lower()
                if job["state"] != "RUNNING" or not p["total_steps"]
                else progress_info(p)
            )
            info = p.get("waiting") or info  # queued behind a limit, or waiting for the cluster
            progress.update(task, completed=p["step"], total=p["total_steps"], info=info)
            live.update(Group(progress, snapshot_anchors(snapshots)) if snapshots else Group(progress))
            if job["state"] in ENDED:
                break
            time.sleep(1.0)
    console.print()
    state = job["state"]
    colour = "green" if state == "SUCCEEDED" else "red"
    console.print(
        f"job {job_id} [{colour}]{state}[/{colour}]" + (f": {escape(job['error'])}" if job["error"] else "")
    )
    if plot and snapshots:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        Path(plot).write_bytes(api.plot(job_id))
        console.print(f"anchors picture saved to {plot}")
    return 0 if state == "SUCCEEDED" else 1


def _info(p: dict) -> str:
    return progress_line(
        p.get("phase"), epoch=p["epoch"], epochs=p["epochs"], images_per_s=p.get("images_per_s")
    )
