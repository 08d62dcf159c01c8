"""Polaris's pre-trained surrogate: built on first use from the committed data, then cached.

`python -m search.polaris --workload resnet50` needs a Starlight model and no manual step,
so the default one is made here, deterministically, from a `SurrogateRecipe`:

1. an analytical low-fidelity collection (`search.collect`: ResNet-50, BERT, U-Net and
   RetinaNet, 131,072 Sobol samples, seed 0, encoding version 2; about 50 s);
2. Starlight-Low (`search.models.vae.train_low`, 60 epochs, seed 0) on its training
   split (about 2 min on one core);
3. Starlight, residual variant (`search.models.dkl.fit_starlight`, 400 iterations), on the
   training split of the committed RTL datasets ``docs/datasets/*.parquet`` (the held-out
   20 % stays out, so `python -m search.starlight evaluate` can still score the model).

Everything runs on one torch thread with fixed seeds. The result is cached under
``~/.cache/accelsim/polaris/KEY/`` (``$ACCELSIM_POLARIS_CACHE`` overrides the root),
KEY = the first 16 hex digits of the SHA-256 of the recipe, the surrogate input layout
(`search.surrogate_data.INPUT_VERSION` and `input_names`), the SHA-256 of each RTL
dataset file and the torch version: new data or a new input layout gives a new model,
and a run records KEY as its surrogate's identity. Concurrent first uses wait on a file
lock instead of building twice. ``--surrogate FILE`` (`load_surrogate_file`) uses a model
file of `python -m search.starlight train` instead; its identity is the file's SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_RTL", "SurrogateRecipe", "cache_root", "recipe_key", "build_surrogate", "default_surrogate",
           "load_surrogate_file"]

_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RTL = ("docs/datasets/rtl_seed0_n1280.parquet", "docs/datasets/rtl_seed1_n1536.parquet")


@dataclass(frozen=True)
class SurrogateRecipe:
    """How the default surrogate is made (module docstring); paths relative to the
    repository root unless absolute."""

    low_workloads: tuple = ("resnet50", "bert", "unet", "retinanet")
    low_n: int = 131072
    low_seed: int = 0
    low_epochs: int = 60
    rtl: tuple = DEFAULT_RTL
    rtl_rows: int | None = None          # None: the whole RTL training split
    residual: bool = True
    dkl_iters: int = 400
    seed: int = 0

    def paths(self) -> list[Path]:
        return [Path(p) if Path(p).is_absolute() else _ROOT / p for p in self.rtl]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["low_workloads"], d["rtl"] = list(self.low_workloads), [str(p) for p in self.rtl]
        return d


def cache_root() -> Path:
    env = os.environ.get("ACCELSIM_POLARIS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "accelsim" / "polaris"


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recipe_key(recipe: SurrogateRecipe) -> str:
    """The cache key (module docstring). OSError when an RTL dataset is missing."""
    import torch

    from search.surrogate_data import INPUT_VERSION, input_names

    d = recipe.to_dict()
    d["rtl"] = [_sha(p) for p in recipe.paths()]           # the data, not where it lies
    doc = {"recipe": d, "input_version": INPUT_VERSION, "input_names": list(input_names()),
           "torch": str(torch.__version__).split("+")[0]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def build_surrogate(recipe: SurrogateRecipe, out_dir, *, log=None, progress: bool = True) -> Path:
    """Make the surrogate of ``recipe`` in ``out_dir`` (``low/``, ``low.pt``,
    ``starlight.pt``, ``meta.json`` with the seconds of each step); returns
    starlight.pt's path. ``log(line)``: progress lines (default: stderr)."""
    import numpy as np
    import torch

    from search.collect import collect
    from search.models.dkl import DKLOptions, fit_starlight
    from search.models.model_file import file_sha256, save_low, save_starlight
    from search.models.vae import LowOptions, train_low
    from search.surrogate_data import BASE_DIMS, load_datasets

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    secs = {}
    try:
        t0 = time.perf_counter()
        log(f"polaris surrogate 1/3: analytical collection of {recipe.low_n:,} samples "
            f"({', '.join(recipe.low_workloads)}) into {out / 'low'}")
        collect(out / "low", fidelity="analytical", workloads=list(recipe.low_workloads), n=recipe.low_n,
                seed=recipe.low_seed, workers=1, encoding=2, quiet=not progress, stream=io.StringIO(),
                err=sys.stderr if progress else io.StringIO())
        secs["collect_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        low_data = load_datasets([out / "low"], analytical=False).train
        log(f"polaris surrogate 2/3: Starlight-Low on {len(low_data):,} analytical rows, "
            f"{recipe.low_epochs} epochs")
        lopts = LowOptions(epochs=recipe.low_epochs, seed=recipe.seed)
        net, tlog = train_low(low_data.X[:, :BASE_DIMS], low_data.y, lopts, progress=progress)
        save_low(out / "low.pt", net, {"data": [str(out / "low")], "rows": len(low_data),
                                       "best_epoch": tlog.best_epoch})
        secs["train_low_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        rtl = load_datasets(recipe.paths()).train
        if recipe.rtl_rows is not None and recipe.rtl_rows < len(rtl):
            rtl = rtl.subset(np.random.default_rng(recipe.seed).permutation(len(rtl))[:recipe.rtl_rows])
        log(f"polaris surrogate 3/3: Starlight{' (residual)' if recipe.residual else ''} on {len(rtl):,} RTL rows, "
            f"{recipe.dkl_iters} iterations")
        opts = DKLOptions(residual=recipe.residual, iters=recipe.dkl_iters, seed=recipe.seed)
        model = fit_starlight(net.encoder, rtl.X, rtl.y, opts,
                              provenance={"low_file": str(out / "low.pt"), "low_sha256": file_sha256(out / "low.pt"),
                                          "data": [str(p) for p in rtl.sources], "rows": len(rtl),
                                          "recipe": recipe.to_dict()})
        save_starlight(out / "starlight.pt", model)
        secs["train_s"] = round(time.perf_counter() - t0, 1)
    finally:
        torch.set_num_threads(threads)
    (out / "meta.json").write_text(json.dumps({"recipe": recipe.to_dict(), "seconds": secs}, indent=1) + "\n")
    return out / "starlight.pt"


def default_surrogate(recipe: SurrogateRecipe = SurrogateRecipe(), *, root=None, log=None,
                      progress: bool = True):
    """(Starlight, info) of ``recipe``, built on first use (module docstring). ``info``:
    ``path``, ``identity`` ("default:KEY"), ``built`` (this call built it), ``build_s``."""
    from filelock import FileLock

    from search.models.model_file import load_starlight

    key = recipe_key(recipe)
    root = Path(root) if root is not None else cache_root()
    d = root / key
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    built = False
    with FileLock(str(root / f"{key}.lock")):
        if not (d / "starlight.pt").is_file():
            (log or (lambda s: print(s, file=sys.stderr, flush=True)))(
                f"building Polaris's default surrogate (first use: about 4 minutes; cached in {d})")
            tmp = root / f".{key}.building"
            if tmp.exists():
                import shutil
                shutil.rmtree(tmp)
            build_surrogate(recipe, tmp, log=log, progress=progress)
            tmp.replace(d)
            built = True
    model = load_starlight(d / "starlight.pt")
    return model, {"path": str(d / "starlight.pt"), "identity": f"default:{key}", "built": built,
                   "build_s": round(time.perf_counter() - t0, 1) if built else 0.0}


def load_surrogate_file(path):
    """(Starlight, info) of a Starlight model file (`search.models.model_file`:
    ModelFileError, one line, for a file of another kind or input version)."""
    from search.models.model_file import file_sha256, load_starlight

    model = load_starlight(path)
    return model, {"path": str(path), "identity": f"file:{file_sha256(path)}", "built": False, "build_s": 0.0}
