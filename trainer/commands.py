"""What the trainer's commands do (`anchor-opt train`, `run-job`, `fit`, `config`; trainer.cli parses
their arguments): each reads its settings once, calls the library, and prints what it returns."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from trainer.artifacts.terminal import COLUMNS, Bar, FetchBar, fit_table, progress_line, result_anchors
from trainer.config import load_config

BUILTIN_CONFIGS = Path(__file__).parent / "configs"

console = Console(stderr=True)


def builtin_configs() -> list[str]:
    """The names of the built-in configs (trainer/configs/*.yaml)."""
    return sorted(p.stem for p in BUILTIN_CONFIGS.glob("*.yaml"))


def _resolve_config(name: str) -> Path:
    """A path, or the name of a built-in config (`demo` -> trainer/configs/demo.yaml)."""
    path = Path(name)
    if path.exists():
        return path
    builtin = BUILTIN_CONFIGS / f"{path.stem}.yaml"
    if path.parent == Path(".") and builtin.exists():
        return builtin
    known = ", ".join(builtin_configs())
    raise ValueError(f"config file not found: {name} (built-in configs: {known})")


def cmd_fit(args: argparse.Namespace) -> int:
    """Fits anchors to a dataset's box shapes, without training; prints, plots and writes them."""
    from trainer.contract.storage import StorageSettings
    from trainer.data.records import SKIP_HINT, DataError
    from trainer.fit.dataset import fit_dataset

    with Progress(*COLUMNS, console=console, transient=True) as progress:
        try:
            fitted = fit_dataset(
                args.dataset, num=args.anchors, method=args.method, init=args.init, compare=args.compare,
                image_size=args.image_size, stride=args.stride, seed=args.seed, fmt=args.format,
                split=args.split, skip_bad=args.skip_bad, temperature=args.temperature, dist=args.dist,
                progress=FetchBar(progress), storage=StorageSettings(),
            )  # fmt: skip
        except DataError as exc:  # this command's flag, not the config key
            raise DataError(str(exc).replace(SKIP_HINT, "give --skip-bad")) from None
    plot = Path(args.plot or (Path(args.out).with_suffix(".png") if args.out else "anchors_fit.png"))
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_bytes(fitted.picture(args.name))
    fitted.report["plot"] = str(plot)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(fitted.json())
    out = Console()
    fitted.print(out)
    # Paths whole (never wrapped: a path cut in two cannot be pasted) and not read as markup.
    out.print(
        f"picture: {plot}" + (f"\nreport:  {args.out}" if args.out else ""), soft_wrap=True, markup=False
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.contract.layout import CHECKPOINT_PREFIX, RESULT_KEY
    from trainer.contract.storage import StorageSettings
    from trainer.contract.writer import RunWriter

    config_path = _resolve_config(args.config)
    if args.device is not None and args.workers is not None:
        raise ValueError(
            "--device is for a run in this process: Ray workers train on the device Ray gives them "
            "(--gpus-per-worker)"
        )
    device = [] if args.device is None else [f"device={args.device}"]
    cfg = load_config(config_path, [*args.set, *device])  # --device D is --set device=D, validated alike
    out = args.out or str(Path("runs") / config_path.stem)  # a folder or s3://bucket/prefix
    settings = StorageSettings()  # read once: the run, its workers and its data source all get these
    writer = RunWriter(out, settings)
    if not (args.resume or args.fresh) and (writer.keys(CHECKPOINT_PREFIX) or writer.exists(RESULT_KEY)):
        raise ValueError(f"{out} already holds a run: pass --resume to continue it or --fresh to replace it")

    if args.workers is None:
        from trainer.train.local_run import train

        with Progress(*COLUMNS, console=console, disable=args.quiet) as progress:
            result = train(cfg, out, resume=args.resume, progress=Bar(progress), settings=settings)
    else:
        result = _train_on_ray(args, cfg, writer)
        if result is None:
            status = writer.status()
            error = status.error if status else "no status written"
            console.print(f"[red]training failed:[/red] {escape(error or '')}", soft_wrap=True)
            return 1

    out_console = Console()
    out_console.print(result_anchors(result))
    out_console.print(fit_table(result))
    if result.get("eval"):
        ev = result["eval"]
        out_console.print(
            f"validation: AP50 {ev['ap50']:.3f}  AP75 {ev['ap75']:.3f}  AP[.5:.95] {ev['ap']:.3f}  "
            f"VOC07 AP50 {ev.get('voc07_ap50', float('nan')):.3f}  "
            f"VOC AP50 {ev.get('voc_ap50', float('nan')):.3f}"
        )
    out_console.print(
        f"outputs in {out.rstrip('/')}/: result.json, anchors/ (snapshots), metrics/, artifacts/ "
        "(anchors.png, anchors.yaml, anchors.cfg, weights.pt)",
        soft_wrap=True,
        markup=False,
    )
    return 0


def _train_on_ray(args: argparse.Namespace, cfg, writer) -> dict | None:
    """`train --workers N`: the same loop on N Ray Train workers (a local Ray unless --ray-address
    or RAY_ADDRESS names a cluster); the bar follows status.json as a job's poller would. Returns
    result.json, or None when training failed (status.json says why)."""
    import os
    import threading
    import time

    from trainer.contract.layout import RESULT_KEY
    from trainer.contract.spec import JobState, Resources
    from trainer.train.driver import train_to_end

    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    cpus = args.cpus_per_worker
    if cpus is None:
        cpus = max(1, (os.cpu_count() or 1) // args.workers)
    resources = Resources(
        workers=args.workers,
        cpus_per_worker=cpus,
        gpus_per_worker=args.gpus_per_worker,
        max_failures=args.max_failures,
    )
    from trainer.train.ray_run import ensure_ray

    ensure_ray(args.ray_address, log_to_driver=False)  # in the main thread; the bar is the output
    if not args.resume:
        writer.clear()
    ended: list = []
    run = threading.Thread(
        target=lambda: ended.append(
            train_to_end(writer, cfg, resources, writer.settings, ray_address=args.ray_address, reopen=True)
        ),
        daemon=True,
    )
    with Progress(*COLUMNS, console=console, disable=args.quiet) as progress:
        task = progress.add_task(f"training on {args.workers} Ray worker(s)", total=None, info="starting")
        run.start()
        try:
            _follow(writer, run, progress, task)
        except KeyboardInterrupt:  # the workers stop with this process; the checkpoints stay
            writer.update_status(state=JobState.CANCELLED, error="interrupted", finished_at=time.time())
            raise
    final = ended[0] if ended else writer.status()
    return writer.read_json(RESULT_KEY) if final and final.state == JobState.SUCCEEDED else None


def _follow(writer, run, progress: Progress, task) -> None:
    """Draws status.json's progress until the training thread ends."""
    while run.is_alive():
        run.join(timeout=0.5)
        status = writer.status()
        if status and status.total_steps:
            info = progress_line(
                status.phase, epoch=status.epoch, epochs=status.epochs, images_per_s=status.images_per_s
            )
            progress.update(task, completed=status.step, total=status.total_steps, info=info)


def cmd_run_job(args: argparse.Namespace) -> int:
    """Runs one job of a store to its end (what the control plane's Ray job executes)."""
    from trainer.contract.spec import JobState
    from trainer.contract.storage import StorageSettings
    from trainer.train.driver import run_job
    from trainer.train.ray_resources import resource_wait_s

    # The entry point of a Ray job: the environment the service gave it is read here, once.
    status = run_job(
        args.job_id,
        args.store,
        StorageSettings(),
        ray_address=args.ray_address,
        resource_wait_s=resource_wait_s(),
    )
    if status.state != JobState.SUCCEEDED:
        console.print(
            f"[red]job {args.job_id} {status.state}:[/red] {escape(status.error or '')}", soft_wrap=True
        )
        return 1
    console.print(f"job {args.job_id} SUCCEEDED at step {status.step}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Prints the resolved configuration (defaults, file, --set) as YAML."""
    import yaml

    cfg = load_config(_resolve_config(args.config) if args.config else None, args.set)
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0
