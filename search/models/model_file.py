"""Model files of Starlight-Low and Starlight: one ``torch.save`` dict each, read back safely.

A file holds tensors and plain values only (read with ``torch.load(weights_only=True)``,
so a file cannot run code):

    format          FORMAT
    kind            "starlight-low" or "starlight"
    input_version   `search.surrogate_data.INPUT_VERSION` of the rows it reads
    input_names     `search.surrogate_data.input_names()` when it was made
    options         the options dataclass as a dict (`LowOptions` / `DKLOptions`)
    d               input columns of the network (Starlight-Low)
    state           the ``state_dict``
    train_X, train_y  the training rows and targets (Starlight: an exact GP needs them)
    provenance      where it came from: data files and row counts, the creation time,
                    package versions; for Starlight also the Starlight-Low file it
                    transferred the encoder from, with that file's SHA-256 and provenance

`load_low` and `load_starlight` check the format, kind and input layout and raise
`ModelFileError` (one line) for a file that is missing, corrupted, of the other kind, or
made for another input layout or encoding version.
"""

from __future__ import annotations

import hashlib
import io
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from search.surrogate_data import INPUT_VERSION, input_names

__all__ = ["FORMAT", "ModelFileError", "file_sha256", "load_low", "load_starlight", "save_low",
           "save_starlight", "versions"]

FORMAT = "accelsim.surrogate/1"


class ModelFileError(ValueError):
    """A model file cannot be used (one line)."""


def versions() -> dict:
    import botorch
    import gpytorch

    return {"python": platform.python_version(), "torch": str(torch.__version__), "gpytorch": str(gpytorch.__version__),
            "botorch": str(botorch.__version__), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _write(path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def _read(path, kind: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise ModelFileError(f"{path}: not a readable model file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'corrupted'})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a {FORMAT} model file")
    if d.get("kind") != kind:
        raise ModelFileError(f"{path}: a {d.get('kind')!r} model file; expected {kind!r}")
    if d.get("input_version") != INPUT_VERSION or tuple(d.get("input_names", ())) != input_names():
        raise ModelFileError(f"{path}: made for input layout version {d.get('input_version')!r} "
                             f"({len(d.get('input_names', ()))} columns); this toolkit reads version "
                             f"{INPUT_VERSION} ({len(input_names())} columns, encoding version 2): retrain it")
    return d


def save_low(path, net, provenance: dict) -> None:
    """Write Starlight-Low ``net`` (`search.models.vae.StarlightLow`) to ``path``."""
    _write(path, {"format": FORMAT, "kind": "starlight-low", "input_version": INPUT_VERSION,
                  "input_names": list(input_names()), "options": net.options.to_dict(), "d": net.d,
                  "state": net.state_dict(), "provenance": {**provenance, "versions": versions()}})


def load_low(path):
    """(StarlightLow, provenance) from ``path``."""
    from .vae import LowOptions, StarlightLow

    d = _read(path, "starlight-low")
    try:
        o = d["options"]
        net = StarlightLow(int(d["d"]), LowOptions(**{**o, "encoder": tuple(o["encoder"]),
                                                      "predictor": tuple(o["predictor"])}))
        net.load_state_dict(d["state"])
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path}: inconsistent Starlight-Low file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0]})") from None
    net.eval()
    return net, d["provenance"]


def save_starlight(path, model) -> None:
    """Write a fitted `search.models.dkl.Starlight` to ``path``."""
    enc = model.model.features.encoder
    widths = tuple(m.out_features for m in enc.trunk if isinstance(m, torch.nn.Linear))
    _write(path, {"format": FORMAT, "kind": "starlight", "input_version": INPUT_VERSION,
                  "input_names": list(input_names()), "options": model.options.to_dict(),
                  "encoder": {"d": enc.x_lo.numel(), "widths": list(widths), "latent": enc.mu.out_features},
                  "state": model.model.state_dict(), "train_X": model.model.train_inputs[0].detach(),
                  "train_y": torch.as_tensor(model.train_y), "losses": list(model.losses),
                  "provenance": {**model.provenance, "versions": versions()}})


def load_starlight(path):
    """The `search.models.dkl.Starlight` saved in ``path``."""
    from .dkl import DKLOptions, Starlight, build_model
    from .vae import LatentEncoder

    d = _read(path, "starlight")
    try:
        e = d["encoder"]
        enc = LatentEncoder(int(e["d"]), tuple(e["widths"]), int(e["latent"]))
        options = DKLOptions(**d["options"])
        model = build_model(enc, d["train_X"].numpy(), d["train_y"].numpy(), options.residual)
        model.load_state_dict(d["state"])
    except Exception as ex:  # noqa: BLE001
        raise ModelFileError(f"{path}: inconsistent Starlight file ({type(ex).__name__}: "
                             f"{str(ex).splitlines()[0]})") from None
    model.eval()
    return Starlight(model, options, d["provenance"], d.get("losses", []))
