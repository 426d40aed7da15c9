# The control plane: `anchor-opt serve` (FastAPI on uvicorn), which validates jobs, records them in
# the job store and submits them to a Ray cluster. No torch: the service never imports it and the
# `service` extra does not pull it in (tests/docker checks both), so the image stays small.
#
#   docker build -f docker/api.Dockerfile -t anchor-opt-api .      # from the repository root
#
# Three stages: `requirements` turns pyproject.toml into a plain list, `builder` installs that list
# into a virtual environment and builds the project's wheel, and the runtime stage gets the
# environment and the wheel, and nothing else (no source tree, no build files, no pip cache).

FROM python:3.11.14-slim-bookworm AS requirements
WORKDIR /build
COPY pyproject.toml docker/requirements.py ./
# The base dependencies plus the `service` extra, exactly as pyproject.toml lists them.
RUN python requirements.py pyproject.toml service > requirements.txt


FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# No compiler: every dependency has a wheel for Linux x86_64 and arm64 (pip would say which one
# does not, and this stage is where build-essential would go).
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies before any source: this layer is rebuilt only when the list itself changes (a code
# edit, or a pyproject.toml edit outside the dependency lists, leaves it cached).
COPY --from=requirements /build/requirements.txt /build/requirements.txt
RUN pip install -r /build/requirements.txt
# The project's own wheel, without dependencies. setuptools reads README.md (the package's readme).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY trainer ./trainer
COPY service ./service
RUN pip wheel --no-deps --wheel-dir /wheels .


FROM python:3.11.14-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MPLBACKEND=Agg \
    ANCHOR_OPT_HOST=0.0.0.0 \
    ANCHOR_OPT_PORT=8000
# uid 1000 (numeric below, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd).
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/app --shell /usr/sbin/nologin app
# The dependencies: a layer that stays cached, pulled once, while only the code changes.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /wheels /wheels
# `pip check` fails the build if the project's pins and the installed set ever disagree.
RUN pip install --no-deps /wheels/*.whl \
    && rm -rf /wheels \
    && pip check
USER 1000:1000
WORKDIR /home/app
EXPOSE 8000
# /healthz answers while the process is up (/readyz also needs storage and Ray: that is for load
# balancers, not for restarting the container). No curl in a slim image: Python's urllib instead;
# urlopen raises on anything but a 2xx, which exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ANCHOR_OPT_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["anchor-opt"]
CMD ["serve"]
