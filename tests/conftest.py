import ipaddress
import shutil
import socket

import pytest

import patientml_widgets as pml


def _is_loopback(address) -> bool:
    if isinstance(address, tuple):
        host = address[0]
    else:
        return True  # unix sockets
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pytest_configure(config):
    """Code trust (a key and signatures in the user's data directory) goes to a folder of this test
    session, never the real user's: kernels, workers and notebooks started by tests inherit it.
    """
    import os
    import tempfile

    os.environ["PATIENTML_DATA_DIR"] = tempfile.mkdtemp(prefix="patientml-data-")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that reaches past this machine (loopback stays allowed for kernels)."""
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        if not _is_loopback(address):
            raise AssertionError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect)


@pytest.fixture
def project(tmp_path):
    return pml.Project.open(tmp_path / "study", user="tester")


@pytest.fixture
def seg(project):
    return project.create_model(
        "Lesion segmentation", problem_type="segmentation", classes=["background", "lesion", "margin"]
    )


@pytest.fixture
def cls(project):
    return project.create_model("Lesion type", problem_type="classification", classes=["nevus", "melanoma", "other"])


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo"
    pml.Project.demo(path)
    return path


@pytest.fixture
def demo(demo_template, tmp_path):
    path = tmp_path / "demo"
    shutil.copytree(demo_template, path)
    return pml.Project.open(path, create=False, user="tester")
