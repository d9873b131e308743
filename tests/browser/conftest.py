"""Fixtures: a real JupyterLab (``lab``) and a Chromium page (``page``); helpers live in lab.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .lab import CHROMIUM_ARGS, chromium_path, running_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory, demo_template):
    base = tmp_path_factory.mktemp("lab")
    demo = base / "demo"
    shutil.copytree(demo_template, demo)
    with running_lab(base, {"PATIENTML_DEMO_DIR": str(demo)}) as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs it with apt-get)")
        pytest.skip("chromium is not installed; run scripts/test.sh to install it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    yield pg
    shots = Path(os.environ.get("PATIENTML_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(shots / f"{request.node.name}.png"))
    context.close()
