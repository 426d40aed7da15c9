"""Training under Ray Train: trainer.train.loop's loop on every rank of a TorchTrainer worker group.

    train_on_ray(cfg, "s3://bucket/jobs/<id>", Resources(workers=4, gpus_per_worker=1))

Each worker is one DDP rank (gloo on CPUs, NCCL on GPUs with bf16 autocast). Checkpoints go through
Ray Train into `<run root>/checkpoints/` (pyarrow's S3 filesystem for s3:// roots); when a worker
dies, Ray restarts the group (up to `resources.max_failures` times) and every rank restores the
last committed checkpoint, so the step count continues where it was. Everything else the run
writes goes through trainer.contract.storage from rank 0 (trainer.train.loop).

With no cluster address (argument or RAY_ADDRESS) a local Ray is started, sized to this machine.
Measured behaviour this builds on: docs/notes/2026-11-24-ray-train-2.60.md.

Waiting for resources: trainer.train.ray_resources.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from trainer.train.local_ray import lock_down, set_ray_defaults

set_ray_defaults()  # before Ray is imported

import ray  # noqa: E402
import ray.train  # noqa: E402
import ray.train.torch  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from ray.train.v2.api.exceptions import ControllerError  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from trainer.config import TrainConfig  # noqa: E402
from trainer.contract.layout import CHECKPOINT_PREFIX, RAY_CHECKPOINT_FILE, RAY_RUN_NAME  # noqa: E402
from trainer.contract.spec import DEFAULT_RESOURCE_WAIT_S, Resources  # noqa: E402
from trainer.contract.storage import StorageSettings, parse_uri  # noqa: E402
from trainer.contract.writer import RunWriter  # noqa: E402
from trainer.train.device import uses_amp  # noqa: E402
from trainer.train.loop import Session, run_loop  # noqa: E402
from trainer.train.ray_resources import ResourcesUnavailable, ResourceWait, check_capacity  # noqa: E402

log = logging.getLogger(__name__)

_QUIET = "trainer.train.ray_run.quiet_ray_logs"


class RaySession(Session):
    """A rank of a Ray Train worker group (call inside the training function)."""

    checkpoint_key = CHECKPOINT_PREFIX

    def __init__(self) -> None:
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.amp = uses_amp(self.device)  # the same rule as a run in one process

    def prepare_model(self, model: nn.Module) -> nn.Module | None:
        wrapped = ray.train.torch.prepare_model(model)  # DistributedDataParallel when world_size > 1
        return None if wrapped is model else wrapped

    def prepare_loader(self, loader):
        # Our EpochSampler already gives each rank its slice of every global batch (and the
        # augmentation seeds); Ray's own DistributedSampler would replace it. Batches to the device.
        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)

    def restore(self) -> tuple[bytes, str] | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return (Path(folder) / RAY_CHECKPOINT_FILE).read_bytes(), checkpoint.path

    def save(self, data: bytes | None, step: int, epoch: int) -> None:
        metrics = {"step": step, "epoch": epoch}
        if data is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:  # report uploads it before returning
            (Path(folder) / RAY_CHECKPOINT_FILE).write_bytes(data)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    def sum(self, t: Tensor) -> Tensor:
        if self.world_size == 1:
            return t
        t = t.detach().to(self.device, torch.float32).clone()
        dist.all_reduce(t)
        return t

    def gather(self, t: Tensor) -> list[Tensor]:
        if self.world_size == 1:
            return [t]
        t = t.detach().to(self.device).contiguous()
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return out


def _train_worker(config: dict) -> None:
    """The function each Ray Train worker runs."""
    quiet_ray_logs()
    torch.set_num_threads(config["threads"])  # Ray starts workers with OMP_NUM_THREADS=1
    cfg = TrainConfig.model_validate(config["cfg"])
    writer = RunWriter(config["root"], config["storage"])
    run_loop(cfg, writer, RaySession(), fault=config.get("fault"))


def quiet_ray_logs() -> None:
    """Without its dashboard Ray Train warns every ~2 s that it cannot clean up placement groups.
    Runs in every Ray worker process (worker_process_setup_hook) and in the driver."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(
        logging.ERROR
    )


_started_here = False  # whether ensure_ray started the (local) Ray this process uses


def ensure_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    temp_dir: str | None = None,
    log_to_driver: bool = True,
) -> bool:
    """Connects to the cluster at `address` (or RAY_ADDRESS), or starts a local Ray with `num_cpus`
    (default: this machine's) and `temp_dir` (default /tmp/ray; keep it short: Ray puts Unix
    sockets under it); a local Ray requires a token and binds to 127.0.0.1 only (trainer.train.local_ray).
    Call it from the main thread (Ray sets a SIGTERM handler there).
    `log_to_driver=False` keeps the workers' output out of this process's (the CLI's bar); errors
    still arrive with the exceptions. True when this call started a local Ray."""
    global _started_here
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    local = {} if address else lock_down()  # a Ray of ours: token and loopback only (trainer.train.local_ray)
    ray.init(
        # "local", not None: with None Ray joins a cluster another `ray start` recorded in its
        # default temp dir, or any GCS running on the machine, instead of starting ours.
        address=address or "local",
        num_cpus=None if address else num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=log_to_driver,
        runtime_env={"worker_process_setup_hook": _QUIET},
        _temp_dir=None if address else temp_dir,
        **local,
    )
    quiet_ray_logs()
    _started_here = address is None
    return _started_here


def ray_storage(root: str, settings: StorageSettings):
    """(storage_path, pyarrow filesystem or None) for Ray Train's RunConfig from a run root URI."""
    where = parse_uri(root)
    if isinstance(where, Path):
        return str(where.resolve()), None
    from pyarrow import fs

    _, bucket, prefix = where
    s = settings
    kwargs: dict = {
        "region": s.region,
        "connect_timeout": s.connect_timeout,
        "request_timeout": s.read_timeout,
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=s.max_attempts),
    }
    if s.endpoint_url:
        url = urlsplit(s.endpoint_url)
        kwargs |= {"endpoint_override": url.netloc + url.path.rstrip("/"), "scheme": url.scheme or "https"}
        kwargs["force_virtual_addressing"] = not s.path_style  # pyarrow is path-style with an endpoint
    if s.access_key_id:
        kwargs |= {"access_key": s.access_key_id, "secret_key": s.secret_access_key.get_secret_value()}
    return f"{bucket}/{prefix}".rstrip("/"), fs.S3FileSystem(**kwargs)


def train_on_ray(
    cfg: TrainConfig,
    root: str,
    resources: Resources,
    settings: StorageSettings,
    *,
    ray_address: str | None = None,
    fault: dict | None = None,
    resource_wait_s: float = DEFAULT_RESOURCE_WAIT_S,
) -> None:
    """Runs the job's training on `resources.workers` Ray Train workers, writing under `root` (a
    run root URI). Resumes from the checkpoint under `root`/checkpoints when there is one. Raises
    ray.train.TrainingFailedError when the workers fail more than `resources.max_failures` times,
    ResourcesUnavailable when they are not placed within `resource_wait_s` seconds (the service's
    `limits.resource_wait_s`, which `anchor-opt run-job` reads from ANCHOR_OPT_RESOURCE_WAIT_S)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    ensure_ray(ray_address)
    if _started_here:
        check_capacity(resources)
    storage_path, filesystem = ray_storage(root, settings)
    use_gpu = resources.gpus_per_worker > 0
    per_worker = {"CPU": resources.cpus_per_worker} | ({"GPU": resources.gpus_per_worker} if use_gpu else {})
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "cfg": cfg.model_dump(mode="json"),
            "root": root,
            "storage": settings,
            "threads": max(1, int(resources.cpus_per_worker)),
            "fault": fault,
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=resources.workers, use_gpu=use_gpu, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=RAY_RUN_NAME,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=LoggingConfig(log_level="WARNING"),  # not a line per report and checkpoint
            callbacks=[ResourceWait(root, settings, resources, resource_wait_s)],
        ),
    )
    try:
        trainer.fit()
    except ControllerError as exc:  # the reason, not Ray's wrapper around it
        if isinstance(exc.controller_failure, ResourcesUnavailable):
            raise exc.controller_failure from None
        raise
