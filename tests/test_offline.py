"""No network at import or run time, and no torch in the base package."""

import subprocess
import sys
import textwrap


def test_import_and_use_make_no_network_calls_and_do_not_import_torch(tmp_path):
    script = textwrap.dedent(
        f"""
        import socket

        def refuse(*args, **kwargs):
            raise RuntimeError("network access: %r" % (args,))

        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.create_connection = socket.getaddrinfo = refuse

        import sys
        import numpy as np
        import patientml_widgets as pml

        demo = pml.Project.demo({str(tmp_path / "demo")!r})
        seg = demo.model("Skin lesion segmentation")
        ex = demo.examples(seg, status="unlabeled", limit=1)[0]
        demo.submit_label(ex, mask=np.zeros(ex.shape, np.uint8))
        assert demo.example(ex).status == "labeled"
        assert "torch" not in sys.modules, "torch was imported"
        assert "ipywidgets" not in sys.modules, "ipywidgets was imported"
        print("offline ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "offline ok" in result.stdout


def test_the_public_surface_is_explicit():
    import patientml_widgets as pml

    assert len(pml.__all__) == len(set(pml.__all__))
    assert "Project" in pml.__all__ and not any(name.startswith("_") and name != "__version__" for name in pml.__all__)
    for name in pml.__all__:
        assert hasattr(pml, name), name
    assert pml.__version__
