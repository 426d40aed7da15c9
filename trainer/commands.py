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
from trainer.config_files import load_config

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
                image_size=args.image_size, stride=args.stride, levels=args.levels, strides=args.strides,
                min_stride_fraction=args.min_stride_fraction, centroid=args.centroid,
                refine_steps=args.refine_steps, seed=args.seed, fmt=args.format, split=args.split,
                skip_bad=args.skip_bad, temperature=args.temperature, dist=args.dist,
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

    if args.device is not None and args.workers is not None:
        raise ValueError(
            "--device is for a run in this process: Ray workers train on the device Ray gives them "
            "(--gpus-per-worker)"
        )
    if args.extend and not args.resume:
        raise ValueError("--extend continues a run: give it with --resume (and --set optim.epochs=N)")
    if args.config is None and not (args.resume and args.out):
        raise ValueError(
            "give a CONFIG (a YAML file or a built-in name), or --resume --out RUN to go on with a run"
        )
    config_path = _resolve_config(args.config) if args.config is not None else None
    overrides = [*args.set, *([] if args.device is None else [f"device={args.device}"])]  # --device: a --set
    out = args.out or str(Path("runs") / config_path.stem)  # a folder or s3://bucket/prefix
    settings = StorageSettings()  # read once: the run, its workers and its data source all get these
    writer = RunWriter(out, settings)
    if args.resume:
        cfg = _resume_config(writer, out, overrides, args.extend)
        if cfg is None:
            return 0
    else:
        cfg = load_config(config_path, overrides)
    if not (args.resume or args.fresh) and (writer.keys(CHECKPOINT_PREFIX) or writer.exists(RESULT_KEY)):
        raise ValueError(f"{out} already holds a run: pass --resume to continue it or --fresh to replace it")

    try:
        if args.workers is None:
            from trainer.train.local_run import train

            with Progress(*COLUMNS, console=console, disable=args.quiet) as progress:
                result = train(cfg, out, resume=args.resume, progress=Bar(progress), settings=settings)
        else:
            result = _train_on_ray(args, cfg, writer)
    except KeyboardInterrupt:
        _say_how_to_resume(writer, out)
        return 130
    if args.workers is not None and result is None:
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


def _say_how_to_resume(writer, out: str) -> None:
    """After Ctrl-C: where the run can go on from, or that there is nothing to go on from."""
    from trainer.contract.layout import CHECKPOINT_KEY

    if writer.exists(CHECKPOINT_KEY):
        status = writer.status()
        step = f" (checkpointed through epoch {status.epoch})" if status and status.epoch else ""
        console.print(f"interrupted: go on with --resume --out {out}{step}", soft_wrap=True, markup=False)
    else:
        console.print(
            f"interrupted before the first checkpoint (the end of epoch 1): nothing to resume in {out}; "
            "run it again to start over",
            soft_wrap=True,
            markup=False,
        )


def _changed(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two config dumps."""
    out = []
    for key in a.keys() | b.keys():
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _changed(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return sorted(out)


def _resume_config(writer, out: str, overrides: list[str], extend: bool):
    """The config a resumed run goes on with: its own config.yaml, `overrides` on top, or None when
    it is finished and not extended (said here). ValueError when there is nothing to resume, or
    when the overrides change the schedule without --extend (the checkpoint refuses other changes)."""
    import yaml

    from trainer.config import TrainConfig
    from trainer.config_files import apply_overrides, validate_config
    from trainer.contract.layout import CHECKPOINT_KEY, CONFIG_KEY
    from trainer.contract.spec import JobState

    if not writer.exists(CHECKPOINT_KEY):
        raise ValueError(
            f"{out}: nothing to resume, no checkpoint there (a run writes its first at the end of its "
            "first epoch); start it again without --resume"
        )
    stored = yaml.safe_load(writer.read_bytes(CONFIG_KEY)) if writer.exists(CONFIG_KEY) else {}
    where = f"{out.rstrip('/')}/{CONFIG_KEY}"
    before = validate_config(stored, TrainConfig, where)
    cfg = validate_config(apply_overrides(stored, overrides), TrainConfig, where, overrides)
    changed = [
        k for k in _changed(before.model_dump(), cfg.model_dump()) if k not in ("optim.epochs", "device")
    ]
    if changed:
        raise ValueError(
            f"{where}: a resumed run keeps its config; these --set change it: {', '.join(changed)} (only "
            "device, and optim.epochs with --extend, may); start a new run with --out elsewhere"
        )
    if cfg.optim.epochs != before.optim.epochs and not extend:
        raise ValueError(
            f"--set optim.epochs={cfg.optim.epochs}: the run was set to {before.optim.epochs} epochs; "
            "add --extend to train it longer"
        )
    if extend and cfg.optim.epochs <= before.optim.epochs:
        raise ValueError(
            f"--extend: give a longer schedule than the run's {before.optim.epochs} epochs "
            f"(--set optim.epochs={before.optim.epochs + 10}, say)"
        )
    status = writer.status()
    if status is not None and status.state == JobState.SUCCEEDED and not extend:
        console.print(
            f"{out}: the run is finished ({status.step} of {status.total_steps} steps, {status.epochs} "
            "epochs); nothing to do. To train it longer: --resume --extend --set optim.epochs=N",
            soft_wrap=True,
            markup=False,
        )
        return None
    return cfg


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
