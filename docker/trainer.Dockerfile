# The trainer: every Ray node (the head, which runs the job drivers `anchor-opt run-job`, and the GPU
# workers, which run the Ray Train workers) uses this one image, so the driver and the workers always
# have the same code and the same versions of torch and Ray.
#
#   docker build -f docker/trainer.Dockerfile -t anchor-opt-trainer .   # from the repository root
#
# Base: plain python:3.11-slim, not nvidia/cuda. The PyPI wheel of torch 2.13.0 for Linux x86_64 is
# the CUDA 13.0 build and brings its own CUDA libraries as pip packages (its metadata requires
# cuda-toolkit==13.0.3, nvidia-cudnn-cu13==9.20.0.48, nvidia-nccl-cu13==2.29.7), and torch loads
# those, not a system CUDA. An nvidia/cuda base would add a second CUDA of its own for nothing, and
# would need Python 3.11 installed on Ubuntu besides. What the host must give is the driver:
# the NVIDIA Container Toolkit mounts it into the container; CUDA 13.0 needs driver 580 or newer.
#
# Two stages: `builder` makes the requirement list and the project's wheel; the runtime stage
# installs torch, then the rest, then the project, as separate layers, in the order in which they
# change least often. (Copying a finished virtual environment, as the API image does, would make one
# layer of several GB that changes, and is pulled again, whenever any dependency changes.)

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml docker/requirements.py ./
# Base dependencies plus the `train` extra (the job driver and the Ray Train workers) and the
# `service` extra (Ray's dashboard and job server on the head: ray[default]).
RUN python requirements.py pyproject.toml train service > /requirements.txt
COPY README.md ./
COPY trainer ./trainer
COPY service ./service
RUN python -m pip wheel --no-deps --wheel-dir /wheels .


FROM python:3.11.14-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MPLBACKEND=Agg \
    RAY_USAGE_STATS_ENABLED=0 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=13.0"
# NVIDIA_DRIVER_CAPABILITIES: compute for CUDA, utility for NVML, through which Ray counts the GPUs.
# NVIDIA_REQUIRE_CUDA: the container toolkit refuses to start a GPU container on a driver too old
# for CUDA 13.0, with a message saying so, instead of torch failing later inside a job.

# wget: the readiness and liveness probes KubeRay adds to Ray pods run `wget ... | grep success`
# (KubeRay releases before its HTTP probes for Ray 2.53+); bash, for its `bash -lc` start command,
# is in the base already. Versions unpinned: Debian replaces them with its security updates, and
# the base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
    && install -d -o 1000 -g 1000 /home/app/.cache/anchor-opt
RUN python -m venv /opt/venv
# torch alone first: with its CUDA packages it is most of the image, and it changes least often.
# Then Ray. Separate RUNs on purpose: separate layers, each cached and pulled on its own.
# Keep these two pins equal to pyproject.toml's (tests/docker checks that they are).
# hadolint ignore=DL3059
RUN pip install torch==2.13.0
# hadolint ignore=DL3059
RUN pip install "ray[train,default]==2.60.0"
COPY --from=builder /requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
COPY --from=builder /wheels /wheels
RUN pip install --no-deps /wheels/*.whl \
    && rm -rf /wheels \
    && pip check
USER 1000:1000
WORKDIR /home/app
# The Ray node's own raylet, through the dashboard agent every node runs (ray[default]) on port
# 52365, on the head and on every worker alike. It answers without Ray's auth token. Compose adds
# the head's GCS check; Kubernetes ignores HEALTHCHECK (the chart has probes of its own).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as r; r.urlopen('http://127.0.0.1:52365/api/local_raylet_healthz', timeout=4)"]
# No ENTRYPOINT: compose and KubeRay give each node its `ray start ...`, and a person may run
# `anchor-opt ...` (train, fit, run-job) in it directly.
CMD ["anchor-opt", "--help"]
