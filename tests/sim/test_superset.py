"""One simulation model per capacity family (`superset=True`) against each configuration's
own model: the same program gives the same cycles, counters, busy figures and output.

The family model has the largest memories (256 KB each) and takes the bank sizes of the
configuration it simulates from two ports. The reference is the configuration's own
Verilator build (exact memory sizes, constant bank boundaries). A second test shows the
ports are in effect: the family model run with its own (largest) bank sizes instead
gives other cycle counts for the same programs, so the agreement is not vacuous."""

import dataclasses

import pytest

from hw.layer import Layer
from search.space import MappingSpace
from sim.build import build_lean_model
from sim.compiler import compile_layer
from sim.evaluate import cycle_budget, evaluate, make_inputs
from sim.lean import run_programs_lean
from sim.rtl_run import ProgramCase
from tests.hw.rtl_common import CFG4

# CFG4's family: the test configuration itself, and one with memories whose bank sizes
# are not powers of two (24 KB / 4 banks = 1,536 rows of 4 bytes; 16 KB / 2 banks).
ODD = dataclasses.replace(CFG4, sp_kb=24, acc_kb=16)

LAYERS = [
    Layer(name="c3x3", n=1, k=12, c=10, p=9, q=9, r=3, s=3, stride=1, padding=1),
    Layer.gemm("gemm", 40, 24, 20),
]


@pytest.fixture(scope="module")
def cache(sim_cache_dir):
    return sim_cache_dir


def _mappings(hw, layer, n, seed):
    return MappingSpace(hw, layer).sample(n, seed=seed)


@pytest.mark.parametrize("hw", [CFG4, ODD], ids=["cfg4", "sp24_acc16"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda x: x.name)
def test_family_model_equals_the_configurations_own(cache, hw, layer):
    for mapping in _mappings(hw, layer, 3, seed=hw.sp_kb):
        own = evaluate(hw, mapping, layer, seed=5, cache_dir=cache)
        fam = evaluate(hw, mapping, layer, seed=5, cache_dir=cache, superset=True)
        assert own.feasible and own.verified and fam.verified
        assert fam.cycles == own.cycles, mapping.to_json()
        assert fam.counts == own.counts and fam.busy == own.busy
        assert fam.extra["model"] == "superset" and "model" not in own.extra


def _case(hw, mapping, layer, ports):
    compiled = compile_layer(hw, mapping, layer)
    inputs = make_inputs(layer, 1)
    image = compiled.image.copy()
    compiled.write_inputs(inputs.x, inputs.w, image=image)
    lo, hi = compiled.output_word_range()
    words = compiled.program.words
    return ProgramCase(layer.name, words, image, lo, hi, cycle_budget(words, hw), ports)


def test_bank_size_ports_are_in_effect(cache, tmp_path):
    model = build_lean_model(CFG4, cache_dir=cache, capacity_ports=True)
    big = CFG4.superset()
    layer = LAYERS[0]
    differ = 0
    for i, mapping in enumerate(_mappings(CFG4, layer, 4, seed=0)):
        right = _case(CFG4, mapping, layer, (("sp_bank_rows", CFG4.sp_bank_rows),
                                             ("acc_bank_rows", CFG4.acc_bank_rows)))
        wrong = dataclasses.replace(right, ports=(("sp_bank_rows", big.sp_bank_rows),
                                                  ("acc_bank_rows", big.acc_bank_rows)))
        a, b = run_programs_lean(model, [right, wrong], workdir=tmp_path / str(i))
        assert a.ok and b.ok
        differ += a.counters["cycles"] != b.counters["cycles"]
    assert differ >= 2   # measured: 3 of these 4 programs change timing with other bank sizes


def test_ports_must_match_the_model(cache, tmp_path):
    layer = LAYERS[1]
    mapping = _mappings(CFG4, layer, 1, seed=1)[0]
    family = build_lean_model(CFG4, cache_dir=cache, capacity_ports=True)
    own = build_lean_model(CFG4, cache_dir=cache)
    bare = _case(CFG4, mapping, layer, ())
    with pytest.raises(ValueError, match="needs exactly"):
        run_programs_lean(family, [bare], workdir=tmp_path / "a")
    with_ports = dataclasses.replace(bare, ports=(("sp_bank_rows", 1), ("acc_bank_rows", 1)))
    with pytest.raises(ValueError, match="needs exactly"):
        run_programs_lean(own, [with_ports], workdir=tmp_path / "b")
    with pytest.raises(ValueError, match="lean harness only"):
        evaluate(CFG4, mapping, layer, cache_dir=cache, superset=True, harness="cocotb")


def test_family_key_ignores_memory_sizes(cache):
    a = build_lean_model(CFG4, cache_dir=cache, capacity_ports=True)
    b = build_lean_model(ODD, cache_dir=cache, capacity_ports=True)
    assert a.build_dir == b.build_dir and a.capacity_ports and a.cfg == CFG4.superset()
    assert a.build_dir.name.startswith("lean_d4_family-")
