"""Every CUDA runtime call of the TensorRT backend, made with edgeconv's own arguments against real cuda-python
releases: cuda-bindings 11.8.x, 12.x and 13.x (``cuda.bindings.runtime``) and cuda-python 11.8.3 and 12.6.0 (the
older ``cuda.cudart``-only layout). Each is installed offline from the wheels that the README's install command
downloads (``python -m edgeconv.backends.cudacheck download``) into a throwaway folder, and exercised in its own
subprocess by ``cuda_bindings_probe.py``. There is no GPU here: a call cuda-python accepts fails inside CUDA (an error
code, or 11.8's "Failed to dlopen libcuda.so.1"), which edgeconv turns into CudaCallError; a call with arguments the
release does not take raises TypeError, as ``cudaGraphInstantiate(graph, 0)`` did on 11.8 (issue 24, defect 4)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeconv.backends import cudacheck

REPO = Path(__file__).resolve().parents[1]
FOLDER = cudacheck.wheel_folder(REPO)
PROBE = Path(__file__).with_name("cuda_bindings_probe.py")


def cudart_names_used() -> dict[str, set[str]]:
    """``cudart.X`` / ``self.cudart.X`` names in edgeconv, per enclosing class (``""`` outside any class)."""
    used: dict[str, set[str]] = {}
    for path in (REPO / "edgeconv").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        owners = {id(n): cls.name for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef) for n in ast.walk(cls)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("cuda"):
                continue
            base = node.value
            if (isinstance(base, ast.Name) and base.id == "cudart") or (
                isinstance(base, ast.Attribute) and base.attr == "cudart"
            ):
                used.setdefault(f"{path.relative_to(REPO)}:{owners.get(id(node), '')}", set()).add(node.attr)
    return used


def test_every_cuda_call_goes_through_cuda_runtime() -> None:
    """The probe exercises CudaRuntime's methods; a cuda call elsewhere would go untested."""
    used = cudart_names_used()
    assert set(used) == {"edgeconv/backends/tensorrt.py:CudaRuntime"}, used
    assert {"cudaGraphInstantiateWithFlags", "cudaMemcpyAsync", "cudaStreamBeginCapture"} <= next(iter(used.values()))
    assert "cudaGraphInstantiate" not in next(iter(used.values()))  # 3 arguments in 11.8, 2 from 12.0


def _installed(release: cudacheck.CudaRelease, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not FOLDER.is_dir():
        pytest.skip(
            f"no cuda-python wheels in {FOLDER}: run `python -m edgeconv.backends.cudacheck download` (the README's "
            "install command does)"
        )
    state = cudacheck.read_index(FOLDER).get(release.requirement)
    if state is None:
        pytest.fail(f"{release.requirement} is not in {FOLDER}; run `python -m edgeconv.backends.cudacheck download`")
    if state != "ok":
        if sys.version_info[:2] <= release.max_python:  # it has wheels for this Python: a failed download, not a gap
            pytest.fail(f"{release.requirement}: {state}, but it has wheels for this Python; download again")
        pytest.skip(f"{release.requirement}: {state}")
    target = tmp_path_factory.mktemp(release.requirement.replace("=", "").replace("*", "x"))
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--quiet", "--no-index", "--no-warn-conflicts",
               "--find-links", str(FOLDER), "--target", str(target), release.requirement]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return target


@pytest.mark.parametrize("release", cudacheck.RELEASES, ids=[r.requirement for r in cudacheck.RELEASES])
def test_cuda_calls_against_release(release: cudacheck.CudaRelease, tmp_path_factory: pytest.TempPathFactory) -> None:
    target = _installed(release, tmp_path_factory)
    # -I: no PYTHONPATH, no user site-packages; the probe puts the release first on sys.path.
    done = subprocess.run([sys.executable, "-I", str(PROBE), str(target)], capture_output=True, text=True, cwd=REPO,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # The release under test is the one that ran, through the module layout load_cudart() must pick for it.
    assert report["module"] == release.module
    assert Path(report["file"]).is_relative_to(target), report["file"]
    assert str(report["version"]).split(".")[0] == str(release.cuda_major)

    # Every CudaRuntime method reached CUDA: it returned, or CUDA (not the Python binding) refused it.
    calls = report["calls"]
    bad = {name: result for name, result in calls.items() if not result.startswith(("ok:", "CudaCallError:"))}
    assert not bad, bad
    assert calls["runtime_version"] == f"ok: {release.cuda_major * 1000 + int(report['version'].split('.')[1]) * 10}"
    # ... and looked up every cuda name edgeconv uses.
    used = set().union(*cudart_names_used().values())
    assert used <= set(report["names"]), used - set(report["names"])

    # Without a usable GPU the error names the driver (with one, this machine's GPU is described).
    info = report["gpu_info"]
    assert info.startswith("ok: GpuInfo(") or (info.startswith("BackendUnavailableError:") and "driver" in info), info

    # Control: the harness tells a signature error from a CUDA error. The call edgeconv used to make takes
    # (graph, flags) from 12.0 and (graph, log buffer, size) in 11.8.
    control = report["control_cudaGraphInstantiate_2_args"]
    if release.cuda_major == 11:
        assert control.startswith("TypeError:"), control
    else:
        assert not control.startswith("TypeError:"), control
