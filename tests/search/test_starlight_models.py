"""search.models.vae, search.models.dkl and search.models.model_file: the transferred
encoder is an exact copy of Starlight-Low's, training is reproducible with a seed, the
BoTorch posterior equals Starlight.predict and the textbook GP formulas, acquisition
functions take the model, update conditions on new rows, and model files round-trip or
fail with one line."""

import copy
from pathlib import Path

import gpytorch
import numpy as np
import pytest
import torch

from search.models.dkl import DKLOptions, ResidualStandardize, Starlight, build_model, fit_starlight
from search.models.model_file import (FORMAT, ModelFileError, file_sha256, load_low, load_starlight, save_low,
                                      save_starlight)
from search.models.vae import LowOptions, StarlightLow, finetune, train_low
from search.surrogate_data import BASE_DIMS, INPUT_VERSION, input_names, load_dataset

REPO = Path(__file__).resolve().parents[2]
RTL = REPO / "docs" / "datasets" / "rtl_seed0_n1280.parquet"
LOW_OPTS = LowOptions(epochs=2, seed=0)



@pytest.fixture(scope="module", autouse=True)
def _one_thread(module_torch_thread):
    """One torch thread for the module (conftest's `module_torch_thread`)."""


@pytest.fixture(scope="module")
def low_data(_one_thread, starlight_analytical_dir):
    """The training split of the analytical collection, network columns only."""
    data = load_dataset(starlight_analytical_dir, analytical=False).train
    return data.X[:, :BASE_DIMS], data.y


@pytest.fixture(scope="module")
def low(low_data):
    net, log = train_low(*low_data, LOW_OPTS)
    return net


@pytest.fixture(scope="module")
def rtl(_one_thread):
    return load_dataset(RTL)


@pytest.fixture(scope="module")
def rtl_small(rtl):
    """64 rows of the RTL training split."""
    tr = rtl.train
    return tr.subset(np.random.default_rng(0).permutation(len(tr))[:64])


@pytest.fixture(scope="module")
def fitted(low, rtl_small):
    """Starlight and its residual variant, 25 iterations each."""
    return {res: fit_starlight(low.encoder, rtl_small.X, rtl_small.y, DKLOptions(residual=res, iters=25))
            for res in (False, True)}


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- Starlight-Low --------------------------------------------------------------------------

def test_train_low_is_deterministic_and_seeded(low, low_data):
    rng_before = torch.random.get_rng_state()
    again, log = train_low(*low_data, LOW_OPTS)
    assert torch.equal(torch.random.get_rng_state(), rng_before)       # the global RNG is untouched
    assert _state_equal(low.state_dict(), again.state_dict())
    np.testing.assert_array_equal(low.predict(low_data[0][:50]), again.predict(low_data[0][:50]))
    other, _ = train_low(*low_data, LowOptions(epochs=2, seed=1))
    diff = [k for k in low.state_dict() if not torch.equal(low.state_dict()[k], other.state_dict()[k])]
    assert any(k.startswith("encoder.trunk") for k in diff) and any(k.startswith("predictor") for k in diff)
    assert len(log.train) == len(log.val) == 2 and 0 <= log.best_epoch < 2
    assert log.val[log.best_epoch] == min(log.val)


def test_low_scaling_and_prediction_by_hand(low, low_data):
    X, y = low_data
    lo, hi = X.min(axis=0), X.max(axis=0)
    rng = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    np.testing.assert_allclose(low.encoder.x_lo.numpy(), lo, rtol=1e-6)
    np.testing.assert_allclose(low.encoder.x_scale.numpy(), rng, rtol=1e-6)
    assert float(low.y_mean) == pytest.approx(np.mean(y), rel=1e-6)
    assert float(low.y_std) == pytest.approx(np.std(y), rel=1e-6)
    # predict = predictor(mu(trunk(scale(x)))) * std + mean, by hand with numpy
    sd = {k: v.double().numpy() for k, v in low.state_dict().items()}

    def lin(h, name):
        return h @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    h = (X[:20] - sd["encoder.x_lo"]) / sd["encoder.x_scale"]
    h = np.maximum(lin(h, "encoder.trunk.0"), 0)
    h = np.maximum(lin(h, "encoder.trunk.2"), 0)
    z = lin(h, "encoder.mu")
    np.testing.assert_allclose(low.latent(X[:20]), z, rtol=1e-4, atol=1e-5)
    for i in (0, 2, 4, 6):
        z = np.maximum(lin(z, f"predictor.{i}"), 0)
    p = lin(z, "predictor.8")[:, 0] * sd["y_std"] + sd["y_mean"]
    np.testing.assert_allclose(low.predict(X[:20]), p, rtol=1e-4)


def test_train_low_rejects_bad_data():
    with pytest.raises(ValueError):
        train_low(np.zeros((1, 4)), np.zeros(1), LOW_OPTS)
    with pytest.raises(ValueError):
        train_low(np.full((4, 3), np.nan), np.zeros(4), LOW_OPTS)
    with pytest.raises(ValueError):
        LowOptions(epochs=0)
    with pytest.raises(ValueError):
        DKLOptions(iters=-1)


def test_finetune_copies_and_freezes(low, rtl_small):
    before = copy.deepcopy(low.state_dict())
    o = LowOptions(epochs=2, batch=16, seed=0)
    frozen, _ = finetune(low, rtl_small.X[:, :BASE_DIMS], rtl_small.y, o, fresh_predictor=True, freeze_encoder=True)
    assert _state_equal(low.state_dict(), before)                   # the original is untouched
    for k, v in low.encoder.state_dict().items():
        assert torch.equal(frozen.encoder.state_dict()[k], v)
    assert not torch.equal(frozen.predictor[0].weight, low.predictor[0].weight)
    joint, _ = finetune(low, rtl_small.X[:, :BASE_DIMS], rtl_small.y, o)
    assert not torch.equal(joint.encoder.mu.weight, low.encoder.mu.weight)
    assert _state_equal(low.state_dict(), before)


# ---- the transfer ---------------------------------------------------------------------------

def test_transferred_encoder_is_an_exact_copy(low, rtl_small):
    low_before = copy.deepcopy(low.state_dict())
    for residual in (False, True):
        gp = build_model(low.encoder, rtl_small.X, rtl_small.y, residual=residual)
        enc = gp.features.encoder
        ref = copy.deepcopy(low.encoder).double().state_dict()
        got = enc.state_dict()
        assert got.keys() == ref.keys()
        for k in ref:
            assert got[k].dtype == torch.float64
            assert torch.equal(got[k], ref[k]), k
        assert enc is not low.encoder
        assert all(p.data_ptr() != q.data_ptr() for p, q in zip(enc.parameters(), low.encoder.parameters()))
        # iters=0: the same
        s = fit_starlight(low.encoder, rtl_small.X, rtl_small.y, DKLOptions(iters=0, residual=residual))
        for k, v in s.model.features.encoder.state_dict().items():
            assert torch.equal(v, ref[k]), k
        # the kernel's inputs: the latent standardised over the training rows
        z = low.latent(rtl_small.X[:, :BASE_DIMS])
        with torch.no_grad():
            f = gp.features(torch.as_tensor(rtl_small.X)).numpy()
        np.testing.assert_allclose(f[:, :2], (z - z.mean(0)) / z.std(0, ddof=1), rtol=1e-4, atol=1e-4)
        if residual:
            a = rtl_small.X[:, BASE_DIMS:BASE_DIMS + 2]
            np.testing.assert_allclose(f[:, 2:], (a - a.mean(0)) / a.std(0, ddof=1), rtol=1e-9, atol=1e-9)
        else:
            assert f.shape[1] == 2
    # joint training moves the DKL's encoder, never Starlight-Low's
    s = fit_starlight(low.encoder, rtl_small.X, rtl_small.y, DKLOptions(iters=10, freeze_encoder=False, lr_net=1e-2))
    ref = copy.deepcopy(low.encoder).double()
    assert not torch.equal(s.model.features.encoder.trunk[0].weight, ref.trunk[0].weight)
    assert not torch.equal(s.model.features.encoder.mu.weight, ref.mu.weight)
    assert _state_equal(low.state_dict(), low_before)
    # frozen (the default): the encoder keeps Starlight-Low's weights
    s = fit_starlight(low.encoder, rtl_small.X, rtl_small.y, DKLOptions(iters=10))
    for k, v in s.model.features.encoder.state_dict().items():
        assert torch.equal(v, ref.state_dict()[k]), k


def test_fit_starlight_is_deterministic(low, rtl_small, rtl, fitted):
    te = rtl.held_out
    for joint in (False, True):
        o = DKLOptions(iters=15, freeze_encoder=not joint, seed=3)
        a = fit_starlight(low.encoder, rtl_small.X, rtl_small.y, o)
        b = fit_starlight(low.encoder, rtl_small.X, rtl_small.y, o)
        ma, sa = a.predict(te.X)
        mb, sb = b.predict(te.X)
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_array_equal(sa, sb)
        assert a.losses == b.losses and len(a.losses) == 15
        assert _state_equal(a.model.state_dict(), b.model.state_dict())
    # training lowers the loss
    assert fitted[False].losses[-1] < fitted[False].losses[0]
    assert fitted[True].losses[-1] < fitted[True].losses[0]


def test_fit_starlight_rejects_bad_data(low, rtl_small):
    with pytest.raises(ValueError):
        fit_starlight(low.encoder, rtl_small.X[:1], rtl_small.y[:1], DKLOptions(iters=1))
    X = rtl_small.X.copy()
    X[0, 5] = np.nan
    with pytest.raises(ValueError):
        fit_starlight(low.encoder, X, rtl_small.y, DKLOptions(iters=1))
    with pytest.raises(ValueError):
        fit_starlight(low.encoder, rtl_small.X[:, :BASE_DIMS], rtl_small.y, DKLOptions(iters=1, residual=True))


# ---- the posterior --------------------------------------------------------------------------

def _by_hand(s: Starlight, X: np.ndarray):
    """Mean and variance of ln EDP from the fitted kernel, noise and mean, by the
    textbook formulas (Cholesky solves), then the outcome transform undone by hand."""
    g = s.model
    with torch.no_grad():
        Xt = torch.as_tensor(X, dtype=torch.float64)
        Xtr = g.train_inputs[0]
        F, Fs = g.features(Xtr), g.features(Xt)
        n = len(Xtr)
        K = g.covar_module(F).to_dense() + g.likelihood.noise * torch.eye(n, dtype=torch.float64)
        Ks = g.covar_module(F, Fs).to_dense()
        kss = g.covar_module(Fs, diag=True)
        m = g.mean_module.constant
        yt = g.train_targets
        L = torch.linalg.cholesky(K)
        mean = m + Ks.T @ torch.cholesky_solve((yt - m).unsqueeze(-1), L).squeeze(-1)
        var = kss - (Ks * torch.cholesky_solve(Ks, L)).sum(0)
        mu, sd = g.outcome_transform.means.squeeze(), g.outcome_transform.stdvs.squeeze()
        mean = mean * sd + mu
        if s.options.residual:
            mean = mean + Xt[:, BASE_DIMS] + Xt[:, BASE_DIMS + 1]
        # the transformed targets are the (residual) ln EDP standardised by mu, sd
        y0 = torch.as_tensor(s.train_y)
        if s.options.residual:
            y0 = y0 - Xtr[:, BASE_DIMS] - Xtr[:, BASE_DIMS + 1]
        np.testing.assert_allclose(yt.numpy(), ((y0 - mu) / sd).numpy(), rtol=1e-10, atol=1e-12)
    return mean.numpy(), (var * sd**2).numpy()


@pytest.mark.parametrize("residual", [False, True])
def test_posterior_equals_predict_and_the_gp_formulas(fitted, rtl, rtl_small, residual):
    s = fitted[residual]
    X = rtl.held_out.X
    mean, std = s.predict(X)
    Xt = torch.as_tensor(X, dtype=torch.float64)
    with torch.no_grad():
        post = s.model.posterior(Xt)
    assert post.mean.shape == (len(X), 1)
    np.testing.assert_allclose(post.mean.squeeze(-1).numpy(), mean, rtol=1e-8)
    np.testing.assert_allclose(post.variance.squeeze(-1).numpy(), std**2, rtol=1e-8)
    hm, hv = _by_hand(s, X)
    np.testing.assert_allclose(mean, hm, rtol=1e-6)
    np.testing.assert_allclose(std**2, hv, rtol=1e-6)
    # exact (non-LOVE) predictive variances agree too
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
        post = s.model.posterior(Xt)
    np.testing.assert_allclose(post.variance.squeeze(-1).numpy(), hv, rtol=1e-6)
    # observation noise adds sigma^2 on the original scale
    _, std_n = s.predict(X, observation_noise=True)
    noise = float(s.model.likelihood.noise.detach()) * float(s.model.outcome_transform.stdvs.squeeze()) ** 2
    np.testing.assert_allclose(std_n**2, std**2 + noise, rtol=1e-8)
    # chunked prediction is the same as one call per row
    m1 = np.concatenate([s.predict(X[i:i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(m1, mean[:5], rtol=1e-10)
    # train_y is the targets on the original scale
    np.testing.assert_allclose(s.train_y, rtl_small.y, rtol=1e-12)
    np.testing.assert_array_equal(s.train_X, rtl_small.X)
    with pytest.raises(ValueError):
        s.predict(X[:, :BASE_DIMS])
    e_m, e_s = s.predict(X[:0])
    assert e_m.shape == (0,) and e_s.shape == (0,)


@pytest.mark.parametrize("residual", [False, True])
def test_upper_confidence_bound_takes_the_model(fitted, rtl, residual):
    from botorch.acquisition import UpperConfidenceBound

    s = fitted[residual]
    X = rtl.held_out.X[:40]
    mean, std = s.predict(X)
    with torch.no_grad():
        ucb = UpperConfidenceBound(s.model, beta=4.0)(torch.as_tensor(X, dtype=torch.float64)[:, None, :])
    ucb = ucb.numpy()
    assert ucb.shape == (40,) and np.isfinite(ucb).all()
    np.testing.assert_allclose(ucb, mean + 2.0 * std, rtol=1e-8)


def test_residual_prior_mean_far_from_the_data(fitted, rtl):
    # the outcome transform alone: untransform adds the analytical ln EDP back
    X = torch.as_tensor(rtl.held_out.X[:7], dtype=torch.float64)
    ot = fitted[True].model.outcome_transform
    assert isinstance(ot, ResidualStandardize)
    z = torch.zeros(7, 1, dtype=torch.float64)
    y, _ = ot.untransform(z, X=X)
    want = ot.means.squeeze() + X[:, BASE_DIMS] + X[:, BASE_DIMS + 1]
    np.testing.assert_allclose(y.squeeze(-1).numpy(), want.numpy(), rtol=1e-12)


def test_residual_beats_plain_on_held_out_rows(fitted, rtl):
    from search.surrogate_metrics import metrics

    te = rtl.held_out
    plain = metrics(te.y, fitted[False].predict(te.X)[0])
    res = metrics(te.y, fitted[True].predict(te.X)[0])
    ana = metrics(te.y, te.analytical_log_edp())
    assert res["rho"] > 0.95 and ana["rho"] > 0.95
    assert res["median_abs_log"] < plain["median_abs_log"]


# ---- update ---------------------------------------------------------------------------------

@pytest.mark.parametrize("residual", [False, True])
def test_update_adds_rows_and_conditions_on_them(fitted, rtl, rtl_small, residual):
    s = fitted[residual]
    te = rtl.held_out
    # the held-out rows the model predicts worst
    err0 = np.abs(s.predict(te.X)[0] - te.y)
    pick = np.argsort(-err0)[:3]
    Xn, yn = te.X[pick], te.y[pick]
    t_before = s.train_X.copy()
    u = s.update(Xn, yn, iters=5)
    assert isinstance(u, Starlight) and u is not s
    assert u.train_X.shape == (len(rtl_small) + 3, BASE_DIMS + 2)
    np.testing.assert_array_equal(u.train_X[:len(rtl_small)], t_before)
    np.testing.assert_array_equal(u.train_X[len(rtl_small):], Xn)
    np.testing.assert_allclose(u.train_y[len(rtl_small):], yn, rtol=1e-12)
    np.testing.assert_allclose(u.train_y[:len(rtl_small)], rtl_small.y, rtol=1e-12)
    assert len(u.losses) == len(s.losses) + 5
    err1 = np.abs(u.predict(Xn)[0] - yn)
    assert (err1 < err0[pick]).all()
    # the original is unchanged
    np.testing.assert_array_equal(s.train_X, t_before)
    np.testing.assert_allclose(np.abs(s.predict(Xn)[0] - yn), err0[pick], rtol=1e-12)
    # the feature standardisation stays the original's
    assert torch.equal(u.model.features.z_mean, s.model.features.z_mean)
    # default iterations: a quarter of options.iters
    u2 = s.update(Xn[:1], yn[:1])
    assert len(u2.losses) == len(s.losses) + s.options.iters // 4


# ---- model files ----------------------------------------------------------------------------

def test_low_file_round_trip(low, low_data, tmp_path):
    path = tmp_path / "low.pt"
    save_low(path, low, {"data": ["x"], "rows": 3})
    net, prov = load_low(path)
    assert isinstance(net, StarlightLow)
    assert _state_equal(net.state_dict(), low.state_dict())
    assert net.options == low.options
    np.testing.assert_array_equal(net.predict(low_data[0][:100]), low.predict(low_data[0][:100]))
    assert prov["rows"] == 3 and prov["data"] == ["x"] and "torch" in prov["versions"]
    d = torch.load(path, weights_only=True)
    assert d["format"] == FORMAT and d["kind"] == "starlight-low" and d["input_version"] == INPUT_VERSION
    assert tuple(d["input_names"]) == input_names()
    assert not list(tmp_path.glob("*.tmp"))
    import hashlib

    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("residual", [False, True])
def test_starlight_file_round_trip(fitted, rtl, tmp_path, residual):
    s = fitted[residual]
    s = Starlight(s.model, s.options, {"note": "test"}, s.losses)
    path = tmp_path / "m.pt"
    save_starlight(path, s)
    t = load_starlight(path)
    assert t.options == s.options
    assert _state_equal(t.model.state_dict(), s.model.state_dict())
    np.testing.assert_array_equal(t.train_X, s.train_X)
    np.testing.assert_allclose(t.train_y, s.train_y, rtol=1e-14)
    X = rtl.held_out.X
    for noise in (False, True):
        m0, s0 = s.predict(X, observation_noise=noise)
        m1, s1 = t.predict(X, observation_noise=noise)
        np.testing.assert_allclose(m1, m0, rtol=1e-12)
        np.testing.assert_allclose(s1, s0, rtol=1e-10)
    assert t.losses == s.losses and t.provenance["note"] == "test"


def _one_line(e, path):
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


def _rewrite(src, dst, **changes):
    d = torch.load(src, weights_only=True)
    d.update(changes)
    torch.save(d, dst)
    return dst


def test_bad_model_files_are_one_line_errors(low, fitted, tmp_path):
    lowp, dklp = tmp_path / "low.pt", tmp_path / "dkl.pt"
    save_low(lowp, low, {})
    save_starlight(dklp, fitted[False])
    names = list(input_names())
    v1_names = [n for n in names if not n.startswith("buffers_")]       # the encoding-1 layout
    cases = []
    for src, load in ((lowp, load_low), (dklp, load_starlight)):
        stem = src.stem
        cases += [
            (load, _rewrite(src, tmp_path / f"{stem}_v0.pt", input_version=INPUT_VERSION + 1), "input layout"),
            (load, _rewrite(src, tmp_path / f"{stem}_names.pt", input_names=v1_names), "input layout"),
            (load, _rewrite(src, tmp_path / f"{stem}_renamed.pt", input_names=names[::-1]), "input layout"),
            (load, _rewrite(src, tmp_path / f"{stem}_format.pt", format="other/1"), "not a"),
            (load, tmp_path / f"{stem}_missing.pt", "no such"),
        ]
        trunc = tmp_path / f"{stem}_trunc.pt"
        trunc.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2])
        junk = tmp_path / f"{stem}_junk.pt"
        junk.write_bytes(np.random.default_rng(0).bytes(4096))
        text = tmp_path / f"{stem}.txt"
        text.write_text("hello\nworld\n")
        cases += [(load, trunc, "not a readable"), (load, junk, "not a readable"), (load, text, "not a readable")]
    # wrong kind, each way
    cases += [(load_low, dklp, "'starlight' model file"), (load_starlight, lowp, "'starlight-low' model file")]
    # a consistent header with a broken state
    d = torch.load(lowp, weights_only=True)
    d["state"] = {k: v for k, v in d["state"].items() if not k.startswith("predictor")}
    torch.save(d, tmp_path / "low_state.pt")
    cases.append((load_low, tmp_path / "low_state.pt", "inconsistent"))
    d = torch.load(dklp, weights_only=True)
    d["encoder"] = {**d["encoder"], "latent": 3}
    torch.save(d, tmp_path / "dkl_state.pt")
    cases.append((load_starlight, tmp_path / "dkl_state.pt", "inconsistent"))
    # a pickle that would run code is refused by weights_only
    import pickle

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Path("x")))
    cases.append((load_low, evil, "not a readable"))
    for load, path, words in cases:
        with pytest.raises(ModelFileError) as e:
            load(path)
        assert words in _one_line(e, path), (path, str(e.value))
    # the good files still load
    load_low(lowp)
    load_starlight(dklp)
