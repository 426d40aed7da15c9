"""`anchor-opt demo` (what `make demo` runs): the whole product on one machine, in one command.

It starts the service (the embedded default: a local folder as the job store, a local Ray head),
submits the demo job (trainer/configs/demo.yaml: five identical anchors on the synthetic set) over
HTTP, follows it with a live bar and anchors table, saves the anchors picture, and stops the
service and the Ray head, if it started that head (a head another service process started in the
same folder, a demo running beside this one, is left running). Ctrl-C cancels the job first.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from service.watch import console, follow
from trainer.safe_yaml import read_yaml_mapping

DEMO_SPEC = Path(__file__).resolve().parents[1] / "trainer" / "configs" / "demo.yaml"


def run_demo(out: Path, spec_path: str | None = None) -> int:
    import uvicorn

    from service.app import create_app, default_launcher
    from service.client import ApiClient
    from service.settings import load_settings

    spec = read_yaml_mapping(spec_path or DEMO_SPEC)
    spec.setdefault("name", "demo")
    spec.setdefault("resources", {"workers": 1, "cpus_per_worker": min(2, os.cpu_count() or 1)})
    ray_temp = Path(tempfile.gettempdir()) / "anchor-opt-demo-ray"  # short: Ray's sockets live in it
    settings = load_settings(
        store_uri=str(out / "store"), host="127.0.0.1", port=_free_port(), ray_temp_dir=str(ray_temp)
    )
    console.print(f"starting the service (job store {settings.store_uri}, a local Ray head) ...")
    launcher = default_launcher(settings)  # ours, so that we know whether we started its head
    app = create_app(settings, launcher=launcher)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://{settings.host}:{settings.port}"
    api = ApiClient(url)
    job_id = None
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the service did not start on {url}; see the messages above")
            time.sleep(0.1)
        console.print(f"service up at {url} (API docs at {url}/docs); submitting the demo job")
        job_id = api.submit(spec)["id"]
        status = follow(api, job_id, plot=str(out / "anchors.png"))
        console.print(f"the job's documents: {settings.store_uri}/jobs/{job_id}/")
        return status
    except KeyboardInterrupt:
        if job_id:
            api.cancel(job_id)
            console.print(f"job {job_id} cancelled")
        return 130
    finally:
        api.close()
        server.should_exit = True
        thread.join(timeout=30)
        launcher.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
