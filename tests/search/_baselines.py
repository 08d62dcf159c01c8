"""What the baseline optimisers' tests share (vanilla BO, the oracle, Offline, DOSA): a
two-layer workload, an evaluator that records its calls, and a run made in a store."""

from hw.layer import Layer
from search.evaluators import AnalyticalEvaluator
from search.runs import RunDir

LAYERS = [Layer.conv("conv", n=1, k=32, c=16, p=8, q=8, r=3, s=3, padding=1, count=2),
          Layer.gemm("fc", m=16, k=64, n=32)]


class CountingEvaluator(AnalyticalEvaluator):
    """Records every results_many call's work as (hw, layer, batch size) per item."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def results_many(self, work):
        self.calls.append([(hw, layer, len(b)) for hw, layer, b in work])
        return super().results_many(work)


def stored_run(tmp_path_factory, name: str, opts, run_method, evaluator=None, **kw):
    """``run_method``(LAYERS, opts, evaluator, run, **kw) in a fresh run directory; returns
    (result, path, evaluator)."""
    path = tmp_path_factory.mktemp(name) / "run"
    ev = evaluator if evaluator is not None else AnalyticalEvaluator()
    with RunDir.open(path, opts.to_dict(), seeds={"seed": opts.seed}) as run:
        res = run_method(LAYERS, opts, ev, run, **kw)
    return res, path, ev
