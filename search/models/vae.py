"""Starlight-Low: a VAE with a predictor head, trained on many analytical samples.

Thesis chapter 5.2.3 (Fig 5.4 A). Three fully connected ReLU networks:

* encoder ``d -> 24 -> 12 -> (mu, log sigma^2)`` of a 2-D latent (the thesis's 40-24-12-2
  with its first width replaced by the input width ``d``);
* decoder, the mirror image ``2 -> 12 -> 24 -> d`` (reconstructs the scaled input);
* predictor ``2 -> 64 -> 256 -> 256 -> 64 -> 1`` (standardised ln EDP from the latent).

Loss per batch: ``MSE(prediction, y) + recon_weight * MSE(reconstruction, x) + alpha *
KL(q(z|x) || N(0, I))`` (mean over the batch), with z drawn by the reparameterisation
trick in training and z = mu when predicting. ``predictor_weight=0`` trains the plain
VAE of Fig 5.3a (no predictor term).

Scaling lives inside the network (`StarlightLow`): inputs are min-max scaled by the
training rows' bounds (a constant column is shifted to 0), the target standardised by
the training rows' mean and standard deviation; `StarlightLow.predict` returns ln EDP on
the original scale. The encoder's deterministic path ``x -> mu`` (`StarlightLow.embed`,
`LatentEncoder`) is what Starlight transfers.

`train_low` holds out `LowOptions.val_fraction` of the rows it is given (never the
dataset's test split, which the caller leaves out) and keeps the weights of the epoch
with the lowest validation loss. Training runs under ``torch.random.fork_rng`` seeded
with ``seed`` and shuffles with its own generator: the same data, options and torch
thread count give the same weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["LowOptions", "StarlightLow", "LatentEncoder", "mlp", "train_low", "finetune", "TrainLog"]


@dataclass(frozen=True)
class LowOptions:
    """Architecture and training of Starlight-Low (defaults: the thesis's widths)."""

    encoder: tuple = (24, 12)
    latent: int = 2
    predictor: tuple = (64, 256, 256, 64)
    epochs: int = 40
    batch: int = 512
    lr: float = 1e-3
    alpha: float = 1e-3          # weight of the KL term
    recon_weight: float = 1.0
    predictor_weight: float = 1.0
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch", "latent"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"LowOptions.{name} must be an integer >= 1; got {v!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"LowOptions.val_fraction must be in [0, 1); got {self.val_fraction!r}")
        for name in ("lr", "alpha", "recon_weight", "predictor_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"LowOptions.{name} must be a finite number >= 0; got {v!r}")
        object.__setattr__(self, "encoder", tuple(int(w) for w in self.encoder))
        object.__setattr__(self, "predictor", tuple(int(w) for w in self.predictor))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder"], d["predictor"] = list(self.encoder), list(self.predictor)
        return d


def mlp(widths, *, last_activation: bool = False) -> nn.Sequential:
    """Fully connected ReLU network through ``widths`` (input first)."""
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(nn.Linear(a, b))
        if last_activation or i < len(widths) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class LatentEncoder(nn.Module):
    """x (raw inputs) -> mu (latent): min-max scaling, the encoder's trunk and its mean head."""

    def __init__(self, d: int, widths: tuple, latent: int):
        super().__init__()
        self.register_buffer("x_lo", torch.zeros(d))
        self.register_buffer("x_scale", torch.ones(d))
        self.trunk = mlp((d, *widths), last_activation=True)
        self.mu = nn.Linear(widths[-1] if widths else d, latent)
        self.logvar = nn.Linear(widths[-1] if widths else d, latent)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_lo) / self.x_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mu(self.trunk(self.scale(x)))

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs = self.scale(x)
        h = self.trunk(xs)
        return xs, self.mu(h), self.logvar(h)


class StarlightLow(nn.Module):
    """Encoder + decoder + predictor (see the module docstring). ``d`` input columns."""

    def __init__(self, d: int, options: LowOptions = LowOptions()):
        super().__init__()
        self.d = d
        self.options = options
        self.encoder = LatentEncoder(d, options.encoder, options.latent)
        self.decoder = mlp((options.latent, *reversed(options.encoder), d))
        self.predictor = mlp((options.latent, *options.predictor, 1))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def set_scaling(self, X: np.ndarray, y: np.ndarray) -> None:
        lo, hi = X.min(axis=0), X.max(axis=0)
        rng = hi - lo
        self.encoder.x_lo.copy_(torch.as_tensor(lo))
        self.encoder.x_scale.copy_(torch.as_tensor(np.where(rng > 1e-12, rng, 1.0)))
        self.y_mean.fill_(float(np.mean(y)))
        self.y_std.fill_(float(np.std(y)) if np.std(y) > 0 else 1.0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor, sample: bool = True):
        """(standardised prediction, reconstruction of the scaled input, scaled input, mu, logvar)."""
        xs, mu, logvar = self.encoder.distribution(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return self.predictor(z).squeeze(-1), self.decoder(z), xs, mu, logvar

    @torch.no_grad()
    def predict(self, X) -> np.ndarray:
        """ln EDP (original scale) of rows ``X`` (n, d), numpy in and out."""
        self.eval()
        out = []
        t = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        for i in range(0, len(t), 65536):
            z = self.encoder(t[i:i + 65536])
            out.append(self.predictor(z).squeeze(-1) * self.y_std + self.y_mean)
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    @torch.no_grad()
    def latent(self, X) -> np.ndarray:
        """mu (n, latent) of rows ``X``."""
        self.eval()
        return self.encoder(torch.as_tensor(np.asarray(X), dtype=torch.float32)).double().numpy()


@dataclass
class TrainLog:
    """Per-epoch losses of a training run (train: mean batch loss; val: on the held-back rows)."""

    train: list
    val: list
    best_epoch: int


def _loss(net: StarlightLow, x, y, o: LowOptions, sample: bool = True):
    pred, rec, xs, mu, logvar = net(x, sample=sample)
    kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1))
    return (o.predictor_weight * torch.mean((pred - y) ** 2) + o.recon_weight * torch.mean((rec - xs) ** 2)
            + o.alpha * kl)


def _split(n: int, frac: float, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = gen.permutation(n)
    k = int(round(frac * n)) if n > 1 else 0
    return perm[k:], perm[:k]


def _fit(net: StarlightLow, X, y_std, o: LowOptions, params, *, progress, desc: str,
         loss_fn=None) -> TrainLog:
    gen = np.random.default_rng(o.seed)
    tr, va = _split(len(X), o.val_fraction, gen)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y_std, dtype=torch.float32)
    opt = torch.optim.Adam(params, lr=o.lr)
    loss_fn = loss_fn or (lambda x, yy, sample=True: _loss(net, x, yy, o, sample))
    best, best_state, log = math.inf, copy.deepcopy(net.state_dict()), TrainLog([], [], -1)
    from tqdm import tqdm

    bar = tqdm(range(o.epochs), desc=desc, unit="epoch", disable=not progress, leave=False, dynamic_ncols=True)
    for ep in bar:
        net.train()
        order = tr[gen.permutation(len(tr))]
        tot = 0.0
        for i in range(0, len(order), o.batch):
            b = torch.as_tensor(order[i:i + o.batch])
            opt.zero_grad()
            loss = loss_fn(Xt[b], yt[b])
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
        log.train.append(tot / max(len(tr), 1))
        net.eval()
        with torch.no_grad():
            idx = torch.as_tensor(va if len(va) else tr)
            v = float(loss_fn(Xt[idx], yt[idx], sample=False))
        log.val.append(v)
        if v < best:
            best, best_state, log.best_epoch = v, copy.deepcopy(net.state_dict()), ep
        bar.set_postfix(train=f"{log.train[-1]:.4f}", val=f"{v:.4f}")
    net.load_state_dict(best_state)
    net.eval()
    return log


def train_low(X, y, options: LowOptions = LowOptions(), *, progress: bool = False) -> tuple[StarlightLow, TrainLog]:
    """Train Starlight-Low on rows ``X`` (n, d) and targets ``y`` (n,) ln EDP."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(y) or len(X) < 2:
        raise ValueError(f"X (n, d) and y (n,) with n >= 2 expected; got {X.shape} and {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite")
    with torch.random.fork_rng():
        torch.manual_seed(options.seed)
        net = StarlightLow(X.shape[1], options)
        net.set_scaling(X, y)
        y_std = (y - float(net.y_mean)) / float(net.y_std)
        log = _fit(net, X, y_std, options, net.parameters(), progress=progress, desc="Starlight-Low")
    return net, log


def finetune(net: StarlightLow, X, y, options: LowOptions, *, fresh_predictor: bool = False,
             freeze_encoder: bool = False, progress: bool = False) -> tuple[StarlightLow, TrainLog]:
    """A copy of ``net`` trained further on (X, y) by the prediction MSE alone (the
    baselines of thesis Fig 5.7): ``fresh_predictor`` re-initialises the predictor
    (transferred encoder + new predictor), ``freeze_encoder`` trains the predictor only.
    The input and target scaling stay those of ``net``."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    with torch.random.fork_rng():
        torch.manual_seed(options.seed)
        net = copy.deepcopy(net)
        if fresh_predictor:
            net.predictor = mlp((net.options.latent, *net.options.predictor, 1))
        params = list(net.predictor.parameters())
        if not freeze_encoder:
            params += list(net.encoder.parameters())
        y_std = (y - float(net.y_mean)) / float(net.y_std)

        def loss_fn(x, yy, sample=True):
            return torch.mean((net.predictor(net.encoder(x)).squeeze(-1) - yy) ** 2)

        log = _fit(net, X, y_std, options, params, progress=progress, desc="fine-tune", loss_fn=loss_fn)
    return net, log
