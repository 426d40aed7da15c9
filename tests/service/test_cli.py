"""The CLI's client commands against a real service over HTTP (nothing is scheduled here: the jobs
either stay QUEUED or were trained in this process into the store)."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from rich.console import Console

from service import cli
from service.app import create_app
from service.auth import hash_token
from service.settings import ServiceSettings, TokenEntry
from tests.helpers import free_port, serving, small_config
from trainer.cli import main
from trainer.contract.spec import JobSpec
from trainer.contract.storage import LocalStorage
from trainer.contract.store import JobStore
from trainer.train.local_run import train

TOKEN = "cli-token"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    settings = ServiceSettings(
        store_uri=str(root), tokens=[TokenEntry(tenant="me", sha256=hash_token(TOKEN))]
    )
    store = JobStore(LocalStorage(root))
    cfg = small_config("optim.epochs=1")
    trained = store.create(JobSpec.model_validate(cfg.model_dump()), submitted_by="me").id
    train(cfg, store.run_uri(trained))
    with serving(create_app(settings, schedule=False)) as base:
        yield base, trained


def run(capsys, api, *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "--url", api[0], "--token", TOKEN, *argv[1:]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_submit_prints_the_id_and_the_job_is_listed(api, capsys, tmp_path, monkeypatch):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({"name": "from-cli", "optim": {"epochs": 1}}))
    code, out, _ = run(capsys, api, "submit", str(spec), "--set", "optim.batch_size=4")
    job_id = out.strip()
    assert code == 0 and len(job_id) > 10
    code, out, _ = run(capsys, api, "status", job_id, "--json")
    job = json.loads(out)
    assert job["state"] == "QUEUED" and job["spec"]["optim"]["batch_size"] == 4
    code, out, _ = run(capsys, api, "jobs", "--state", "QUEUED")
    assert code == 0 and job_id in out and "from-cli" in out
    narrow = Console(width=60, file=io.StringIO())  # a terminal narrower than the table
    monkeypatch.setattr(cli, "out", narrow)
    assert run(capsys, api, "jobs")[0] == 0 and job_id in narrow.file.getvalue()  # the id whole
    monkeypatch.undo()
    code, out, _ = run(capsys, api, "cancel", job_id)
    assert code == 0 and "CANCELLED" in out


def test_a_bad_spec_is_refused_before_it_is_sent(api, capsys, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("optim:\n  epochs: -3\n")
    code, _, err = run(capsys, api, "submit", str(spec))
    assert code == 2 and "bad.yaml" in err and "optim.epochs" in err


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "is a folder, not a YAML file"),
        ("name: a\noptim: {epochs: 1}\nname: b\n", "line 3: duplicate key 'name' (first given on line 1)"),
        (
            "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 7)),
            "expands past",
        ),  # 9**7 laughs: 100 MB in the client before
    ],
)
def test_a_folder_duplicate_keys_or_an_alias_bomb_are_one_clear_error(api, capsys, tmp_path, text, needle):
    """Finding 13 of issue 14: each was a traceback, a silent last-wins, or 100 MB of memory."""
    spec = tmp_path / "job.yaml"
    spec.mkdir() if text is None else spec.write_text(text)
    before = run(capsys, api, "jobs")[1]
    code, out, err = run(capsys, api, "submit", str(spec))
    assert code == 2 and out == "" and "Traceback" not in err
    assert str(spec) in " ".join(err.split()) and needle in " ".join(err.split())
    assert run(capsys, api, "jobs")[1] == before  # nothing was sent


def test_status_and_anchors_of_a_finished_job(api, capsys, tmp_path):
    code, out, _ = run(capsys, api, "status", api[1])
    assert code == 0 and "SUCCEEDED" in out and "step 8/8" in out and "anchors_yaml" in out
    picture = tmp_path / "a.png"
    code, out, _ = run(capsys, api, "anchors", api[1], "--plot", str(picture))
    assert code == 0 and "anchors at step 8/8" in out and picture.read_bytes().startswith(b"\x89PNG")


def test_result_logs_download_and_delete(api, capsys, tmp_path, monkeypatch):
    code, out, _ = run(capsys, api, "result", api[1])
    assert code == 0 and "mean_best_iou" in out and "weights:" in out
    code, out, _ = run(capsys, api, "result", api[1], "--json")
    assert code == 0 and json.loads(out)["result"]["steps"] == 8
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, api, "download", api[1], "weights")
    assert code == 0 and (tmp_path / f"{api[1]}-weights.pt").stat().st_size > 10_000
    target = tmp_path / "sub" / "anchors.yaml"
    code, out, _ = run(capsys, api, "download", api[1], "anchors_yaml", "-o", str(target))
    assert code == 0 and "anchors:" in target.read_text()
    code, _, err = run(capsys, api, "download", api[1], "nothing")
    assert code == 2 and "has no artifact 'nothing'" in err
    assert run(capsys, api, "logs", api[1])[0] == 0  # no Ray job: no lines, no error
    queued = run(capsys, api, "submit", _spec(tmp_path))[1].strip()
    code, _, err = run(capsys, api, "delete", queued)
    assert code == 2 and "cancel it first" in " ".join(err.split())
    run(capsys, api, "cancel", queued)
    assert run(capsys, api, "delete", queued) == (0, f"{queued} deleted\n", "")
    assert run(capsys, api, "status", queued)[0] == 2  # gone


def _spec(tmp_path) -> str:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({"name": "to-delete", "optim": {"epochs": 1}}))
    return str(spec)


def test_api_errors_are_one_clear_line(api, capsys):
    code, _, err = run(capsys, api, "status", "no-such-job")
    assert code == 2 and "404" in err and "no-such-job" in err
    code = main(["jobs", "--url", api[0], "--token", "wrong"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "invalid token" in err and "--token or ANCHOR_OPT_API_TOKEN" in err  # the CLI's way
    code = main(["jobs", "--url", f"http://127.0.0.1:{free_port()}"])
    assert code == 2 and "no anchor-opt service answered" in capsys.readouterr().err


def test_token_prints_a_token_and_its_entry(capsys):
    assert main(["token", "--tenant", "vision", "--name", "ci"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    entry = json.loads(lines["entry"])
    assert entry == {"tenant": "vision", "sha256": hash_token(lines["token"]), "name": "ci"}
    TokenEntry.model_validate(entry)


def test_a_tenant_the_service_would_refuse_gets_no_token(capsys):
    assert main(["token", "--tenant", "bad tenant!"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--tenant 'bad tenant!': String should match pattern" in " ".join(err.split())


def test_serve_on_a_busy_port_says_so_before_it_starts_anything(capsys, tmp_path, monkeypatch):
    """No URL printed, no Ray head started: the port is taken, exit 2 naming it."""
    import socket

    monkeypatch.setenv("ANCHOR_OPT_STORE_URI", str(tmp_path / "store"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot listen on 127.0.0.1:{port}" in err and "API on" not in err
    assert not (tmp_path / "store").exists()


def test_ray_stop_stops_the_head_serve_started_and_never_another(capsys, monkeypatch):
    """`anchor-opt ray stop`: the head recorded by this service's temp dir, and only that one."""
    import shutil
    import tempfile

    from service.process_group import group_alive
    from service.ray_head import LocalRayHead

    temp = tempfile.mkdtemp(prefix="ao-", dir="/tmp")  # short: Ray puts sockets in it
    try:
        port = free_port()
        head = LocalRayHead(temp, num_cpus=1, dashboard_port=port)
        head.ensure()
        assert head.started and LocalRayHead.running(temp)["pgid"] == head.pgid
        monkeypatch.setenv("ANCHOR_OPT_RAY_TEMP_DIR", temp)
        cli._say_what_stays(temp)  # what `serve` says at exit without --stop-ray
        said = " ".join(capsys.readouterr().err.split())
        assert f"the local Ray head keeps running (process group {head.pgid}" in said and "ray stop" in said
        assert main(["ray", "stop"]) == 0
        assert "stopped the local Ray head" in capsys.readouterr().err
        assert not group_alive(head.pgid) and LocalRayHead.running(temp) is None
        assert main(["ray", "stop"]) == 0  # again: nothing of ours runs, and nothing else is touched
        assert "nothing to stop" in capsys.readouterr().err
        monkeypatch.setenv("ANCHOR_OPT_RAY_ADDRESS", "http://ray-head:8265")
        assert main(["ray", "stop"]) == 2
        assert "stops only the local head it started itself" in " ".join(capsys.readouterr().err.split())
    finally:
        LocalRayHead.stop(temp)
        shutil.rmtree(temp, ignore_errors=True)
