"""Binder cannot be reached from here; the closest proof: a fresh virtual environment built from
binder/ alone (requirements.txt, then postBuild, as repo2docker does) runs every notebook."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_a_fresh_environment_from_binder_runs_every_notebook(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONPATH", None)
    env["PIP_RETRIES"] = "0"  # Binder's extra index (the CPU torch builds) is not reachable here
    env["PIP_TIMEOUT"] = "5"
    env["PATIENTML_DEMO_DIR"] = str(tmp_path / "demo")
    python = str(venv / "bin" / "python")

    def run(*cmd, cwd=ROOT):
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    run(python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt")
    run("bash", "binder/postBuild")
    assert (tmp_path / "demo" / "patientml.json").exists()  # postBuild built the demo ahead of time
    check = run(
        python,
        "-c",
        "import torch, patientml_widgets; print(torch.__version__, patientml_widgets.__file__)",
        cwd=tmp_path,
    )
    assert "+cu" not in check.stdout.split()[0]  # a CPU build of torch
    assert str(venv) in check.stdout  # the package came from the environment, not this checkout
    work = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for notebook in sorted(work.glob("*.ipynb")):
        run(python, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
            "--ExecutePreprocessor.timeout=600", str(notebook), cwd=work)  # fmt: skip
