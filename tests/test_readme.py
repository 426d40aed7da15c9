"""Every command README.md shows is one a test runs or checks: the tour's "Then try" lines (parsed by
the real parser, their configs resolved as `train` resolves them, the `config` line and one `train`
line run), the command-line synopsis (each subcommand and flag exists), and the curl tour (run for
real with curl against `anchor-opt serve` and the Ray head it starts). The test reads the README's
code blocks itself, so it follows the page when the page changes. (examples/ is tests/test_examples.py.)

The waits below are bounds against a hang, not timings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from service.process_group import group_alive
from service.ray_head import LocalRayHead
from service.settings import ServiceSettings
from tests.helpers import REPO, free_port
from trainer.cli import build_parser, main
from trainer.commands import _resolve_config, builtin_configs
from trainer.config_files import load_config, parse_override

README = (REPO / "README.md").read_text()
EXE = shutil.which("anchor-opt", path=str(Path(sys.executable).parent))
CURL_PATH = "/usr/bin:/bin"  # the curl lines run with the system's curl, nothing of the venv
PNG = b"\x89PNG\r\n\x1a\n"
HANG_S = 300
TINY = ["optim.epochs=1", "data.synthetic.num_train=16", "data.synthetic.num_val=8", "model.image_size=64",
        "optim.batch_size=8"]  # fmt: skip


def section(title: str) -> str:
    """The text of README's `## title` section, up to the next `## ` heading."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert found, f"README.md has no '## {title}' section"
    return found.group(1)


def block(text: str) -> str:
    """The first fenced code block of `text`."""
    found = re.search(r"^```\w*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert found, f"no code block in {text[:80]!r}"
    return found.group(1)


def commands(code: str) -> list[tuple[str, list[str]]]:
    """A block's commands as (text, words), comments dropped; a quoted string may span lines."""
    out, text = [], ""
    for line in code.splitlines():
        text += line + "\n"
        try:
            words = shlex.split(text, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        if words:
            out.append((text.strip(), words))
        text = ""
    assert not text, f"unclosed quote in {text!r}"
    return out


def arrived(data: dict, item: str) -> bool:
    """Whether the `--set key=value` `item` holds in the config mapping `data`."""
    key, value = parse_override(item)
    for part in key:
        data = data[part]
    return data == value


TRY = commands(block(section("A five-minute tour").split("Then try:", 1)[1]))


def tour_argv(words: list[str]) -> list[str]:
    assert words[0] == ".venv/bin/anchor-opt" and EXE, words  # make's venv: the script installed here
    return words[1:]


@pytest.mark.parametrize("words", [w for _, w in TRY], ids=[" ".join(w) for _, w in TRY])
def test_a_then_try_line_parses_and_its_config_holds_its_settings(words):
    args = build_parser().parse_args(tour_argv(words))
    assert args.command in ("train", "config")
    # As cmd_train reads it: the resolved file (or built-in), --set on top (--device is a --set).
    overrides = [*args.set, *([f"device={args.device}"] if getattr(args, "device", None) else [])]
    cfg = load_config(_resolve_config(args.config), overrides).model_dump(mode="json")
    assert args.set and all(arrived(cfg, item) for item in args.set), args.set  # anchors.init=uniform...


def test_the_then_try_config_line_prints_its_settings(capsys):
    (words,) = [w for _, w in TRY if w[1] == "config"]
    assert main(tour_argv(words)) == 0
    printed = yaml.safe_load(capsys.readouterr().out)  # every setting, as YAML: optim.epochs: 20
    assert all(arrived(printed, item) for item in build_parser().parse_args(tour_argv(words)).set)


def test_the_first_then_try_train_line_trains_when_made_tiny(tmp_path, capsys):
    """The line as written, --out moved into tmp_path and --set that make it a step or two."""
    argv = tour_argv(next(w for _, w in TRY if w[1] == "train"))
    out = tmp_path / Path(argv[argv.index("--out") + 1]).name
    argv[argv.index("--out") + 1] = str(out)
    code = main([*argv, *(x for item in TINY for x in ("--set", item)), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "result.json").read_text())["steps"] >= 1


# --- The command line in brief -------------------------------------------------------------------

SYNOPSIS = commands(block(section("The command line in brief")))


@pytest.mark.parametrize("words", [w for _, w in SYNOPSIS], ids=[" ".join(w) for _, w in SYNOPSIS])
def test_a_synopsis_names_real_subcommands_flags_and_files(words):
    assert words[0] == "anchor-opt", words
    # The subcommands: trainer.cli's and those service.cli adds (an `anchor_opt.commands` entry point).
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for alternative in re.split(r"\s\|\s", " ".join(words[1:])):  # `status ID | anchors ID | ...`
        name, *tail = alternative.split()
        assert name in sub.choices, f"anchor-opt has no subcommand {name!r}"
        options = sub.choices[name]._option_string_actions
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", alternative):
            assert flag in options, f"anchor-opt {name} has no option {flag}"
        for word in (w.strip("[]") for w in tail):
            if "/" in word and not word.startswith("--"):
                assert (REPO / word).exists(), f"{word} does not exist"
            elif name in ("train", "config") and word.islower() and word.isalpha():
                assert word in builtin_configs(), f"{word!r} is no built-in config"


# --- The REST API in brief: the curl tour, for real ----------------------------------------------

CURL_TOUR = commands(block(section("The REST API in brief")))


def poll(what: str, check, log: Path):
    deadline = time.monotonic() + HANG_S
    while not (found := check()):
        assert time.monotonic() < deadline, f"never {what}; the service said:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    return found


@pytest.fixture
def ray_temp():
    """A short Ray temp dir (Ray puts Unix sockets in it); the head serve starts in it is stopped
    with `anchor-opt ray stop` afterwards, as serve tells its user to, and is gone after."""
    temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    try:
        yield temp
    finally:
        head = LocalRayHead.running(temp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHOR_OPT_")}
        stop = subprocess.run([EXE, "ray", "stop"], env=env | {"ANCHOR_OPT_RAY_TEMP_DIR": temp},
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        gone = LocalRayHead.running(temp) is None and not (head and group_alive(head["pgid"]))
        shutil.rmtree(temp, ignore_errors=True)
        assert stop.returncode == 0 and gone, stop.stderr


def test_the_curl_tour_runs_against_the_service(tmp_path, ray_temp):
    if shutil.which("curl", path=CURL_PATH) is None:
        pytest.skip(f"no curl on {CURL_PATH}")
    serve = [w for _, w in CURL_TOUR if w[0] == "anchor-opt"]
    assigned = dict(w[0].split("=", 1) for _, w in CURL_TOUR if re.match(r"^[A-Z]+=", w[0]))
    curls = {next(x for x in w if x.startswith("$API"))[4:]: (t, w) for t, w in CURL_TOUR if w[0] == "curl"}
    assert serve == [["anchor-opt", "serve", "&"]] and set(assigned) == {"API", "ID"}, CURL_TOUR
    known = {"/jobs", "/jobs/$ID", "/jobs/$ID/anchors/plot.png", "/jobs/$ID/result"}
    assert set(curls) == known, "a curl line this test does not check"
    defaults = ServiceSettings.model_fields
    assert assigned["API"] == f"http://{defaults['host'].default}:{defaults['port'].default}"  # serve's
    assert assigned["ID"] == "...", "ID is a placeholder the test fills in"

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANCHOR_OPT_", "RAY_"))}
    env |= {
        "ANCHOR_OPT_STORE_URI": str(tmp_path / "store"),
        "ANCHOR_OPT_PORT": str(port),
        "ANCHOR_OPT_RAY_TEMP_DIR": ray_temp,
        "ANCHOR_OPT_RAY_DASHBOARD_PORT": str(free_port()),
        "ANCHOR_OPT_RAY_NUM_CPUS": "2",
    }
    # The lines run as written; a .curlrc adds the HTTP status to what each prints (write-out).
    (tmp_path / ".curlrc").write_text('write-out = "\\n%{http_code}"\n')
    shell = {"PATH": CURL_PATH, "CURL_HOME": str(tmp_path), "API": f"http://127.0.0.1:{port}"}

    def run(path: str) -> tuple[int, str]:
        """The README's curl line for `path`, in bash: (HTTP status, body)."""
        proc = subprocess.run(["bash", "-c", curls[path][0]], env=shell, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, f"{curls[path][0]}: {proc.stderr}"
        body, _, code = proc.stdout.rpartition("\n")
        return int(code), body

    def job() -> dict:
        code, body = run("/jobs/$ID")
        assert code == 200, body
        return json.loads(body)

    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen([EXE, *serve[0][1:-1]], env=env, cwd=tmp_path, stdout=sink, stderr=sink)
    try:

        def ready() -> bool:
            assert server.poll() is None, f"serve exited {server.returncode}:\n{log.read_text()}"
            try:
                return httpx.get(f"{shell['API']}/readyz", timeout=10).json()["status"] == "ok"
            except httpx.HTTPError:
                return False

        poll("ready", ready, log)
        code, body = run("/jobs")  # the README's own body
        answer = json.loads(body)
        assert code == 201 and not answer.get("warnings"), body  # `warnings` is there: an empty list
        shell["ID"] = answer["id"]  # `ID=...  # the "id" of the answer`

        def training() -> bool:
            now = job()
            assert now["state"] in ("QUEUED", "RUNNING"), now
            return now["state"] == "RUNNING" and now["progress"]["step"] > 0

        poll("training", training, log)
        poll("a snapshot", lambda: run("/jobs/$ID/anchors/plot.png")[0] == 200, log)
        words = curls["/jobs/$ID/anchors/plot.png"][1]
        assert (tmp_path / words[words.index("-o") + 1]).read_bytes().startswith(PNG)
        # Before the end the result is a problem (the job is not SUCCEEDED): its 4 epochs would cost CI
        # a minute, and jobs that run to SUCCEEDED, results and all, are tests/service/test_jobs_e2e.py's.
        code, body = run("/jobs/$ID/result")
        problem = json.loads(body)
        assert 400 <= code < 500 and problem["status"] == code and "no result yet" in problem["detail"], body

        cancelled = httpx.post(f"{shell['API']}/jobs/{answer['id']}/cancel", timeout=60)
        assert cancelled.status_code == 200, cancelled.text
        poll("cancelled", lambda: job()["state"] == "CANCELLED", log)
    finally:
        server.send_signal(signal.SIGINT)  # uvicorn's graceful stop, as Ctrl-C
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0, log.read_text()
