"""The CLI commands that read what a job left, or remove it: `logs`, `result`, `download`, `delete`.

    anchor-opt logs ID [--tail N]              the end of the job's Ray log
    anchor-opt result ID [--json]              final anchors, fit and AP (the whole result with --json)
    anchor-opt download ID NAME [-o FILE]      an artifact: weights, anchors_yaml, anchors_plot, ...
    anchor-opt delete ID                       an ended job, with everything it wrote

Each talks to the API as the other client commands do (--url, --token, ANCHOR_OPT_API_*).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from trainer.contract.layout import BOXES_KEY, DATASET_KEY

out = Console()

# Where `download` writes an artifact when -o is not given: its name in the job, as the job has it.
FILE_NAMES = {
    "weights": "weights.pt",
    "anchors_json": "anchors.json",
    "anchors_yaml": "anchors.yaml",
    "anchors_cfg": "anchors.cfg",
    "anchors_plot": "anchors.png",
    "losses_plot": "losses.png",
    "dataset": Path(DATASET_KEY).name,
    "boxes": Path(BOXES_KEY).name,
}


def cmd_logs(args: argparse.Namespace, api) -> int:
    for line in api.logs(args.job_id, args.tail):
        sys.stdout.write(line + "\n")
    return 0


def cmd_result(args: argparse.Namespace, api) -> int:
    found = api.result(args.job_id)
    if args.json:
        sys.stdout.write(json.dumps(found, indent=1) + "\n")
        return 0
    from trainer.artifacts.terminal import fit_table, result_anchors

    result = found["result"]
    out.print(result_anchors(result))
    out.print(fit_table(result))
    ev = result.get("eval") or {}
    if ev:
        out.print(f"validation: AP50 {ev['ap50']:.3f}  AP75 {ev['ap75']:.3f}  AP[.5:.95] {ev['ap']:.3f}")
    for name, url in found["artifacts"].items():
        out.print(f"  {name}: {url}", soft_wrap=True, markup=False)
    return 0


def cmd_download(args: argparse.Namespace, api) -> int:
    data = api.artifact(args.job_id, args.name)
    target = Path(args.output or f"{args.job_id}-{FILE_NAMES.get(args.name, args.name)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    out.print(f"{args.name} of {args.job_id}: {len(data):,} bytes in {target}", soft_wrap=True, markup=False)
    return 0


def cmd_delete(args: argparse.Namespace, api) -> int:
    api.delete(args.job_id)
    out.print(f"{args.job_id} deleted")
    return 0


def add_job_commands(client_parser, with_client) -> None:
    """Adds the commands; `client_parser(name, help)` makes a client command's parser and
    `with_client(func)` turns `func(args, api)` into a command that opens the client."""
    p = client_parser("logs", "the end of a job's Ray log")
    p.add_argument("job_id")
    p.add_argument("--tail", type=int, help="lines (default: the service's log_tail_lines)")
    p.set_defaults(func=with_client(cmd_logs))

    p = client_parser("result", "a finished job's anchors, fit and AP, and its artifacts")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true", help="the whole result document as JSON")
    p.set_defaults(func=with_client(cmd_result))

    p = client_parser(
        "download", "download one of a job's artifacts (weights, anchors_yaml, anchors_plot...)"
    )
    p.add_argument("job_id")
    p.add_argument("name", help=f"the artifact: {', '.join(FILE_NAMES)}")
    p.add_argument("-o", "--output", help="the file (default: <job id>-<its file name>)")
    p.set_defaults(func=with_client(cmd_download))

    p = client_parser("delete", "delete an ended job and everything it wrote")
    p.add_argument("job_id")
    p.set_defaults(func=with_client(cmd_delete))
