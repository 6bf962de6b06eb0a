"""The sdist and wheel build, and the installed wheel serves a call from outside the repo.

The wheel is built from the sdist (``python -m build``), so a file the sdist
lacks fails here. It is installed into a fresh virtual environment; the
dependencies come from this environment's site-packages through a ``.pth``
file, so the test needs no download beyond the build tools (PyPI) and checks
what the wheel itself carries: the package, its data, the ``voicerail`` entry
point, and a server that starts in a directory holding only an agent file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from voicerail.sim.api_client import fetch_call
from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import synthesize_caller_wav
from voicerail.testing.server import serve_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def clean_env() -> dict[str, str]:
    """This environment without the developer's source tree on the path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from the sdist installed; returns its bin dir."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv, env=clean_env())
    bin_dir = venv / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "-q", "build", env=clean_env())
    dist = root / "dist"
    run(bin_dir / "python", "-m", "build", "--outdir", dist, source, env=clean_env())
    [sdist] = dist.glob("voicerail-*.tar.gz")
    [wheel] = dist.glob("voicerail-*.whl")
    assert sdist.stat().st_size > 0
    run(bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", wheel, env=clean_env())
    site = run(bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    deps = Path(sysconfig.get_path("purelib"))  # this environment's: the dependencies
    (Path(site.strip()) / "voicerail_test_deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    return bin_dir


def test_the_wheel_is_what_runs(installed: Path):
    where = run(
        installed / "python", "-c", "import voicerail; print(voicerail.__file__)", env=clean_env()
    )
    assert where.startswith(str(installed.parent)), where
    assert (installed / "voicerail").exists()
    typed = run(
        installed / "python",
        "-c",
        "import importlib.resources as r; "
        "print(r.files('voicerail').joinpath('py.typed').is_file())",
        env=clean_env(),
    )
    assert typed.strip() == "True"


async def test_the_installed_server_answers_a_call_from_a_directory_without_the_repo(
    installed: Path, tmp_path: Path
):
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO / "examples" / "clinic.yaml", app / "clinic.yaml")
    wav = synthesize_caller_wav("What are your opening hours?", tmp_path / "hours.wav")
    with serve_process(
        ["--agent", "clinic.yaml"],
        data_dir=app / "var",
        program=[str(installed / "voicerail")],
        cwd=app,
        env=clean_env(),
    ) as base_url:
        caller = SimulatedTwilioCall(base_url.replace("http", "ws") + "/twilio/media")
        result = await caller.run([CallerTurn.from_wav(wav)])
        call = await fetch_call(base_url, result.call_sid)
    assert call is not None
    kinds = [e["kind"] for e in call["events"]]
    assert "TTSFirstAudio" in kinds, "the greeting was not spoken"
    assert "UserTurnEnded" in kinds and kinds.count("DialogDecided") >= 2, kinds
    assert result.turns[0].v2v_latency_s is not None, "the caller heard no reply"
