"""Fixtures shared by the search tests."""

import io
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch


@contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """One torch thread: reproducible sums, and fair on a shared 2-core machine."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def module_torch_thread():
    """`one_torch_thread` for a whole module (its module-scoped fixtures included)."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="session")
def starlight_analytical_dir(tmp_path_factory) -> Path:
    """A small analytical collection (encoding version 2, ResNet-50 and BERT, 2,048
    samples), made once per session for the surrogate tests."""
    from search.collect import collect

    out = tmp_path_factory.getbasetemp() / "starlight_analytical"
    if not (out / "done").exists():
        collect(out, fidelity="analytical", workloads=["resnet50", "bert"], n=2048, seed=0, workers=1,
                encoding=2, quiet=True, stream=io.StringIO(), err=io.StringIO())
        (out / "done").write_text("ok")
    return out


TINY_RECIPE = dict(low_workloads=("resnet50", "bert"), low_n=2048, low_epochs=2, rtl_rows=64, dkl_iters=30)


def _tiny(tmp_path_factory):
    from search.polaris_surrogate import SurrogateRecipe, default_surrogate

    return default_surrogate(SurrogateRecipe(**TINY_RECIPE), root=tmp_path_factory.getbasetemp() / "polaris-cache",
                             log=lambda s: None, progress=False)


@pytest.fixture(scope="session")
def tiny_surrogate(tmp_path_factory):
    """A Starlight built by Polaris's default-surrogate code path with tiny settings (2,048
    analytical samples, 2 epochs, 64 RTL rows, 30 iterations), once per session."""
    return _tiny(tmp_path_factory)[0]


@pytest.fixture(scope="session")
def surrogate_file(tmp_path_factory) -> Path:
    """The file of `tiny_surrogate` (built once per session, whichever asks first)."""
    return Path(_tiny(tmp_path_factory)[1]["path"])
