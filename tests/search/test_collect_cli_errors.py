"""`python -m search.collect`: every count-like option has a range, the disk must hold
the collection, options without effect are errors, an ``--encoding`` other than the
DIR's own is an error, and all of it is one ``error:`` line and exit 2 before anything
is written."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_common import assert_one_line_error

from search import collect as col

REPO = Path(__file__).resolve().parents[2]


def one_line_error(capsys, argv, message, out=None):
    rc = col.main(argv)
    cap = capsys.readouterr()
    assert_one_line_error(rc, cap.out, cap.err, message, argv)
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), "something was written"


@pytest.fixture
def base(tmp_path):
    out = tmp_path / "o"
    return ["--fidelity", "analytical", "--workloads", "bert", "--out", str(out)], out


@pytest.mark.parametrize("extra, message", [
    # the case
    (["--n", "100000000000"], "--n must be an integer >= 1 and <= 16,777,216 for --fidelity analytical; "
                              "got 100,000,000,000"),
    # fresh ones of the same kinds
    (["--n", str(col.MAX_N["analytical"] + 1)], "--n must be an integer >= 1 and <= 16,777,216"),
    (["--n", "-4"], "--n must be an integer >= 1; got -4"),
    (["--n", "10", "--workers", "100000"], f"--workers must be an integer >= 1 and <= {col.max_workers():,} "
                                           "(4 x the CPU count); got 100,000"),
    (["--n", "10", "--batch", "100000000"], "--batch must be an integer >= 1 and <= 65,536; got 100,000,000"),
    (["--n", "10", "--batch", "0"], "--batch must be an integer >= 1; got 0"),
    (["--n", "10", "--seed", str(2**32)], "--seed must be an integer >= 0 and <= 4,294,967,295 (2**32 - 1)"),
    (["--n", "10", "--seed", "-1"], "--seed must be an integer >= 0; got -1"),
    (["--n", "10", "--timeout", "nan"], "--timeout must be a number of seconds > 0 and <= 86400"),
    (["--n", "10", "--timeout", "1e12"], "--timeout must be a number of seconds > 0 and <= 86400"),
    (["--n", "10", "--max-cycles", str(10**13)], "--max-cycles must be an integer >= 0 and <= 1,000,000,000,000"),
    # options that would have no effect
    (["--n", "10", "--models", "exact"], "--models applies to --fidelity rtl only"),
    (["--n", "10", "--timeout", "60", "--max-cycles", "5"], "--timeout and --max-cycles apply to --fidelity rtl only"),
    (["--n", "10", "--cache-dir", "/tmp"], "--cache-dir applies to --fidelity rtl only"),
])
def test_bad_analytical_options_are_one_line(capsys, base, extra, message):
    argv, out = base
    one_line_error(capsys, argv + extra, message, out)


def test_fresh_cases(capsys, tmp_path):
    """Found trying it as a new user."""
    afile = tmp_path / "afile"
    afile.write_text("")
    out = tmp_path / "o"
    a = ["--fidelity", "analytical", "--workloads", "bert", "--n", "10"]
    one_line_error(capsys, a + ["--out", str(afile)], f"cannot create the output directory {afile}")
    one_line_error(capsys, a + ["--out", str(out), "--max-cycles", "0"], "--max-cycles applies to --fidelity rtl only")
    one_line_error(capsys, a + ["--out", str(out), "--ray", "local", "--workers", "100000"],
                   "--workers must be an integer >= 1 and <=", out)
    (out / "dataset.parquet").mkdir(parents=True)
    one_line_error(capsys, a + ["--out", str(out), "--parquet"], "--parquet", None)
    assert [p.name for p in out.iterdir()] == ["dataset.parquet"]
    one_line_error(capsys, ["--summary", str(afile)], "is not an accelsim dataset")
    assert afile.read_text() == ""
    rtl = ["--fidelity", "rtl", "--workloads", "bert", "--n", "10", "--out", str(tmp_path / "r")]
    one_line_error(capsys, rtl + ["--timeout", "inf"], "--timeout must be a number of seconds > 0 and <= 86400")
    one_line_error(capsys, rtl + ["--cache-dir", "/proc/accelsim-cache"],
                   "--cache-dir /proc/accelsim-cache: cannot write into /proc", tmp_path / "r")


def test_rtl_ranges_and_combinations(capsys, tmp_path):
    out = tmp_path / "r"
    rtl = ["--fidelity", "rtl", "--workloads", "bert", "--out", str(out)]
    one_line_error(capsys, rtl + ["--n", str(col.MAX_N["rtl"] + 1)], "<= 131,072 for --fidelity rtl", out)
    one_line_error(capsys, rtl + ["--n", "10", "--batch", "64"], "--batch applies to --fidelity analytical only", out)
    big = tmp_path / "big.yaml"
    big.write_text("- {name: big, gemm: {m: 1048576, k: 1048576, n: 1024}}\n")
    one_line_error(capsys, ["--fidelity", "rtl", "--workloads", str(big), "--n", "10", "--out", str(out)],
                   "layer 'big' needs 1,109,175,308,288 bytes of simulation DRAM, more than the largest "
                   "simulation DRAM (256 MB)", out)


def test_huge_layers_are_one_line(capsys, tmp_path):
    """The issue's OverflowError: a workload file with huge dimensions."""
    out = tmp_path / "o"
    path = tmp_path / "huge.yaml"
    path.write_text("- {name: huge, gemm: {m: 1000000000, k: 1000000000, n: 1000000000}}\n")
    one_line_error(capsys, ["--fidelity", "analytical", "--workloads", str(path), "--n", "10", "--out", str(out)],
                   "layer 1 'huge': gemm.m must be an integer from 1 to 1,048,576", out)


def test_the_disk_must_hold_the_collection(capsys, base, monkeypatch):
    argv, out = base

    class Usage:
        total = 1 << 40
        free = 100 << 20          # 100 MB free
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage)
    one_line_error(capsys, argv + ["--n", "1000000"],
                   f"--n 1,000,000 needs about 2.8 GB in {out} (about {col.SAMPLE_BYTES:,} bytes a sample); "
                   "only 100.0 MB are free there", out)


@pytest.mark.parametrize("stored, asked", [(1, 2), (2, 1)])
def test_encoding_other_than_the_dirs_own_is_one_line(capsys, tmp_path, stored, asked):
    out = tmp_path / "o"
    col.collect(out, fidelity="analytical", workloads="bert", n=20, workers=1, encoding=stored, stream=io.StringIO())
    before = (out / "dataset.sqlite").read_bytes()
    argv = ["--fidelity", "analytical", "--workloads", "bert", "--n", "40", "--out", str(out), "--quiet",
            "--workers", "1"]
    one_line_error(capsys, argv + ["--encoding", str(asked)],
                   f"{out} holds a collection with --encoding {stored}; this run asks --encoding {asked} "
                   "(omit --encoding to resume it, or use another --out)")
    assert (out / "dataset.sqlite").read_bytes() == before      # nothing written: not even the larger n
    assert col.main(argv + ["--encoding", str(stored)]) == 0   # its own version resumes it (and extends it)
    assert col.main(argv) == 0
    capsys.readouterr()


def test_bad_encoding_values_are_one_line(capsys, base):
    argv, out = base
    one_line_error(capsys, argv + ["--n", "10", "--encoding", "3"], "argument --encoding: invalid choice: 3", out)
    one_line_error(capsys, argv + ["--n", "10", "--encoding", "two"], "argument --encoding: invalid int value: 'two'",
                   out)
    with pytest.raises(col.CollectError, match=r"^--encoding must be one of 1, 2; got 0$"):
        col.collect(out, fidelity="analytical", workloads="bert", n=10, encoding=0)
    assert not out.exists()


def test_summary_takes_no_other_option(capsys, tmp_path):
    for extra in (["--seed", "3"], ["--quiet"], ["--parquet"], ["--timeout", "5"], ["--models", "exact"],
                  ["--encoding", "1"]):
        one_line_error(capsys, ["--summary", str(tmp_path)] + extra, "--summary takes no other option; got --")


def test_module_entry_point(tmp_path):
    p = subprocess.run([sys.executable, "-m", "search.collect", "--fidelity", "analytical", "--workloads", "bert",
                        "--n", "100000000000", "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error: --n must be an integer >= 1 and <= 16,777,216") and p.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()
