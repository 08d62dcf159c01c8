"""Instruction scheduler shared by the program generators (`hw.tiled_gemm`, `sim.compiler`).

Why a schedule matters. The hardware dispatches in program order into per-unit queues
(load, execute, store) and an instruction waits at dispatch, blocking everything behind
it, on a local address hazard or a full queue; long runs of one unit's instructions
therefore serialise the units. A generator instead builds, per tile step, three
streams of items (`Item`): the stores of the previous tile (S), the execute stream of
this step (E, e.g. PRELOAD / COMPUTE pairs) and the loads of the next step (L), and
`merge` interleaves them.

Items. An `Item` is a unit of instructions that is never split (one instruction, or a
PRELOAD with its COMPUTE) together with the local rows it reads and writes, as
inclusive ``(memory, first row, last row)`` ranges; memories are names ("sp" for the
scratchpad, "acc" for the accumulator; rows of different memories never conflict). The
instructions ``Item.ops`` are opaque to the scheduler (Program method calls in
`hw.tiled_gemm`, packed instruction words in `sim.compiler`); only their number counts.

The contract of ``merge(stores, execs, loads)``:

* Spreading. The execute stream is walked in order; after each execute item the store
  and load items due so far are emitted. The k-th (k = 1..n) of the n items of a side
  stream is due once at least (k - 1/2) * n_exec / n execute instructions have been
  emitted (n_exec = the number of instructions of `execs`, counted over ``Item.ops``),
  which spreads each side stream evenly over the block. Items left over (all of them
  when `execs` is empty) follow: first the stores, then the loads.
* Hazards. The concatenation ``stores + execs + loads`` is the reference sequential
  order. Two items have a hazard when one writes a row the other reads or writes (RAW,
  WAR or WAW; reads never conflict with reads). An item is emitted only after every
  item it has a hazard with that precedes it in the reference order: those are pulled
  forward (with, recursively, what they depend on). Within each stream the order is kept.

So if the reference order is a valid sequential program (as `hw.program.interpret` runs
it), so is the merged one, and it produces the same results; the hardware's scoreboard
also stalls on the hazards, so results never depend on the overlap. For example a bias
load for step t+1 into the accumulator buffer still being stored by S follows that
store, and a load into rows an execute item still reads follows that execute item.

Building blocks, for generators that compute the same order faster (`sim.compiler`
caches footprints and bisects instruction counts): `AccessFootprint` (the rows a stream
reads, writes and accesses, as sorted disjoint intervals), `overlap` (do two interval
sets intersect) and `deps` (per item of a later stream, the last item of an earlier
stream it has a hazard with).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

__all__ = ["Item", "Ranges", "AccessFootprint", "overlap", "deps", "merge"]


class Item(NamedTuple):
    """Instructions emitted as a unit (one, or a PRELOAD with its COMPUTE) and their accesses.

    ops: the instructions, opaque to the scheduler (e.g. (Program method name, keyword
    arguments) pairs, or packed instruction words); ``len(ops)`` is what `merge` counts.
    reads / writes: (memory, first row, last row) local row ranges (inclusive), memory
    e.g. "sp" (scratchpad) or "acc" (accumulator).
    """

    ops: tuple[Any, ...]
    reads: tuple[tuple[str, int, int], ...] = ()
    writes: tuple[tuple[str, int, int], ...] = ()


#: Row intervals per memory: memory -> sorted, disjoint, non-adjacent (lo, hi) pairs.
Ranges = dict[str, list[tuple[int, int]]]


def _rows(ranges: tuple[tuple[str, int, int], ...]) -> Iterator[tuple[str, int]]:
    for mem, lo, hi in ranges:
        for r in range(lo, hi + 1):
            yield mem, r


def _union(ranges: Iterator[tuple[str, int, int]]) -> Ranges:
    """Row ranges per memory as sorted, disjoint (lo, hi) intervals."""
    by_mem: Ranges = {}
    for mem, lo, hi in ranges:
        by_mem.setdefault(mem, []).append((lo, hi))
    out: Ranges = {}
    for mem, ivs in by_mem.items():
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(ivs):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        out[mem] = merged
    return out


def overlap(x: Ranges, y: Ranges) -> bool:
    """Whether two interval sets share a row of some memory."""
    for mem in x.keys() & y.keys():
        a, b, i, j = x[mem], y[mem], 0, 0
        while i < len(a) and j < len(b):
            if a[i][0] <= b[j][1] and b[j][0] <= a[i][1]:
                return True
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
    return False


class AccessFootprint(NamedTuple):
    """The rows a stream of items reads, writes and accesses (reads or writes), as `Ranges`.

    (Not to be confused with `hw.mapping.Footprint`, the tile sizes of a mapping.)
    """

    reads: Ranges
    writes: Ranges
    access: Ranges

    @classmethod
    def of(cls, items: list[Item]) -> AccessFootprint:
        reads = [r for it in items for r in it.reads]
        writes = [r for it in items for r in it.writes]
        return cls(_union(iter(reads)), _union(iter(writes)), _union(iter(reads + writes)))


def deps(later: list[Item], earlier: list[Item], later_fp: AccessFootprint,
         earlier_fp: AccessFootprint) -> list[int]:
    """Per item of `later`: the index of the last item of `earlier` it has a local-address
    hazard with (RAW, WAR or WAW on a row), or -1. `later_fp` / `earlier_fp` are the
    streams' footprints (`AccessFootprint`; a quick check that skips the row-by-row walk)."""
    if not (overlap(later_fp.writes, earlier_fp.access)
            or overlap(later_fp.reads, earlier_fp.writes)):
        return [-1] * len(later)
    last_write: dict[tuple[str, int], int] = {}
    last_access: dict[tuple[str, int], int] = {}
    for j, it in enumerate(earlier):
        for key in _rows(it.reads):
            last_access[key] = j
        for key in _rows(it.writes):
            last_access[key] = last_write[key] = j
    return [max([last_access.get(key, -1) for key in _rows(it.writes)]
                + [last_write.get(key, -1) for key in _rows(it.reads)], default=-1)
            for it in later]


def merge(stores: list[Item], execs: list[Item], loads: list[Item]) -> list[Item]:
    """Interleave three independent instruction streams along the execute stream.

    After each execute item, the stores and loads due so far are emitted: the k-th of n
    items of a stream is due after (k - 1/2) * n_exec / n execute instructions, which
    spreads it evenly over the block. The result is a valid sequential program if the
    concatenation stores + execs + loads is: an item is emitted only after every item it
    has a hazard with that precedes it in that concatenation (those are pulled forward).
    See the module docstring for the full contract.
    """
    streams = [stores, execs, loads]
    # hazards[s]: (earlier stream, per-item index of the last hazard in it)
    fps = [AccessFootprint.of(st) for st in streams]
    hazards = [[(e, deps(streams[s], streams[e], fps[s], fps[e])) for e in range(s)]
               for s in range(3)]
    pos = [0, 0, 0]
    out: list[Item] = []

    def emit(s: int, upto: int) -> None:
        while pos[s] <= upto:
            j = pos[s]
            for e, dep in hazards[s]:
                emit(e, dep[j])
            out.append(streams[s][j])
            pos[s] += 1

    n_exec = sum(len(it.ops) for it in execs)
    done = 0
    for j, it in enumerate(execs):
        emit(1, j)
        done += len(it.ops)
        for s in (0, 2):
            n = len(streams[s])
            emit(s, (2 * done * n + n_exec) // (2 * n_exec) - 1)
    emit(0, len(stores) - 1)
    emit(2, len(loads) - 1)
    return out
