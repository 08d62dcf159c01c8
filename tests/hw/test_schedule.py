"""Unit tests of hw.schedule (the store / execute / load stream merge), on hand-built items."""

from __future__ import annotations

import hw.schedule
from hw.schedule import AccessFootprint, Item, deps, merge, overlap


def _it(name: str, reads=(), writes=(), n_ops: int = 1) -> Item:
    """An item whose ops are `n_ops` copies of its name (the scheduler only counts them)."""
    return Item((name,) * n_ops, tuple(reads), tuple(writes))


def _names(items: list[Item]) -> list[str]:
    return [it.ops[0] for it in items]


def test_public_names():
    assert set(hw.schedule.__all__) == {"Item", "Ranges", "AccessFootprint", "overlap", "deps",
                                        "merge"}
    assert Item(("x",)) == (("x",), (), ())


def test_footprint_unions_ranges_per_memory():
    items = [_it("a", reads=[("sp", 4, 6), ("sp", 0, 3)]),
             _it("b", reads=[("sp", 10, 12)], writes=[("acc", 5, 5)]),
             _it("c", reads=[("sp", 11, 11)])]
    fp = AccessFootprint.of(items)
    assert fp.reads == {"sp": [(0, 6), (10, 12)]}    # adjacent (0..3, 4..6) and nested merged
    assert fp.writes == {"acc": [(5, 5)]}
    assert fp.access == {"sp": [(0, 6), (10, 12)], "acc": [(5, 5)]}
    assert AccessFootprint.of([]) == ({}, {}, {})


def test_overlap():
    x = {"sp": [(0, 6), (10, 12)]}
    assert overlap(x, {"sp": [(6, 6)]}) and overlap({"sp": [(12, 20)]}, x)
    assert not overlap(x, {"sp": [(7, 9), (13, 15)]})
    assert not overlap(x, {"acc": [(0, 12)]})    # rows of different memories never conflict
    assert not overlap(x, {})


def test_deps_raw_war_waw():
    earlier = [_it("w0", writes=[("sp", 0, 3)]),
               _it("r1", reads=[("sp", 4, 7)]),
               _it("w2", writes=[("acc", 0, 0)]),
               _it("r3", reads=[("sp", 0, 1)])]
    later = [_it("x", reads=[("sp", 2, 2)]),     # RAW on w0 (r3 only reads: no hazard)
             _it("x", writes=[("sp", 1, 1)]),    # WAR on r3 (the last access, after w0)
             _it("x", writes=[("sp", 5, 5)]),    # WAR on r1
             _it("x", reads=[("sp", 5, 5)]),     # read after read: none
             _it("x", reads=[("sp", 9, 9)]),     # untouched row
             _it("x", writes=[("acc", 0, 0)]),   # WAW on w2
             _it("x", reads=[("acc", 0, 0)])]    # RAW on w2
    fl, fe = AccessFootprint.of(later), AccessFootprint.of(earlier)
    assert deps(later, earlier, fl, fe) == [0, 3, 1, -1, -1, 2, 2]
    assert deps(later[3:5], earlier, AccessFootprint.of(later[3:5]), fe) == [-1, -1]


def test_merge_spreads_side_streams_evenly():
    # 8 one-instruction execute items, 3 stores, 2 loads. The k-th of n is due once
    # (k - 1/2) * 8 / n execute instructions are out: stores after 4/3, 4, 20/3 -> after
    # E1, E3, E6; loads after 2, 6 -> after E1, E5. Stores before loads at the same point.
    execs = [_it(f"E{i}", writes=[("acc", i, i)]) for i in range(8)]
    stores = [_it(f"S{i}", reads=[("acc", 100 + i, 100 + i)]) for i in range(3)]
    loads = [_it(f"L{i}", writes=[("sp", 50 + i, 50 + i)]) for i in range(2)]
    assert _names(merge(stores, execs, loads)) == [
        "E0", "E1", "S0", "L0", "E2", "E3", "S1", "E4", "E5", "L1", "E6", "S2", "E7"]


def test_merge_counts_instructions_not_items():
    # execute items of 3, 1, 1, 1 instructions (6 in all); 2 stores due after 1.5 and 4.5
    # instructions: after E0 (3 out) and after E2 (5 out)
    execs = [_it(f"E{i}", n_ops=n) for i, n in enumerate((3, 1, 1, 1))]
    stores = [_it("S0"), _it("S1")]
    assert _names(merge(stores, execs, [])) == ["E0", "S0", "E1", "E2", "S1", "E3"]


def test_merge_load_waits_for_an_earlier_execute_it_overlaps():
    # 6 execute items; the single load is due after 3 instructions (after E2), but it
    # writes a scratchpad row E4 reads, so E3 and E4 are pulled before it (E5 is not)
    execs = [_it(f"E{i}", reads=[("sp", 10 * i, 10 * i + 3)], writes=[("acc", i, i)])
             for i in range(6)]
    load = _it("L0", writes=[("sp", 42, 42)])
    assert _names(merge([], execs, [load])) == ["E0", "E1", "E2", "E3", "E4", "L0", "E5"]
    # the same load into a row no execute item touches stays at its due point
    free = _it("L0", writes=[("sp", 45, 45)])
    assert _names(merge([], execs, [free])) == ["E0", "E1", "E2", "L0", "E3", "E4", "E5"]


def test_merge_pulls_stores_before_conflicting_loads_and_executes():
    # 4 execute items, 2 stores due after E0 and E2, 1 load due after E1
    execs = [_it(f"E{i}", writes=[("acc", i, i)]) for i in range(4)]
    stores = [_it("S0", reads=[("acc", 20, 20)]), _it("S1", reads=[("acc", 30, 33)])]
    base = merge(stores, execs, [_it("L0", writes=[("sp", 0, 0)])])
    assert _names(base) == ["E0", "S0", "E1", "L0", "E2", "S1", "E3"]
    # a load into rows S1 still reads comes after S1 (WAR), and S1 keeps its stream order
    out = merge(stores, execs, [_it("L0", writes=[("acc", 31, 31)])])
    assert _names(out) == ["E0", "S0", "E1", "S1", "L0", "E2", "E3"]
    # an execute item writing rows S1 reads comes after S1 (WAR), S0 first
    execs[1] = _it("E1", writes=[("acc", 33, 33)])
    assert _names(merge(stores, execs, [])) == ["E0", "S0", "S1", "E1", "E2", "E3"]


def test_merge_without_executes_and_empty():
    stores = [_it("S0", reads=[("acc", 0, 3)]), _it("S1")]
    loads = [_it("L0", writes=[("acc", 2, 2)]), _it("L1")]
    assert _names(merge(stores, [], loads)) == ["S0", "S1", "L0", "L1"]
    assert merge([], [], []) == []
