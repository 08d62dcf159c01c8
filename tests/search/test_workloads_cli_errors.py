"""`python -m search.workloads`: bad names, files, batches and sizes are one ``error:``
line and exit 2; workloads have documented limits (`hw.layer`), so the next tool never
gets a layer it cannot handle; a closed stdout (``| head``) is quiet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_common import assert_one_line_error

from hw.layer import MAX_WORKLOAD_LAYERS, MAX_WORKLOAD_MACS, Layer, LayerError, check_workload
from search.workload_file import MAX_FILE_BYTES, WorkloadError
from search.workloads import MAX_BATCH, get_workload, main

REPO = Path(__file__).resolve().parents[2]


def one_line_error(capsys, argv, message):
    rc = main(argv)
    cap = capsys.readouterr()
    assert_one_line_error(rc, cap.out, cap.err, message, argv)


@pytest.mark.parametrize("text, message", [
    # the case: a layer of 10^27 MACs
    ("- {name: huge, gemm: {m: 1000000000, k: 1000000000, n: 1000000000}}\n",
     "layer 1 'huge': gemm.m must be an integer from 1 to 1,048,576 (2**20); got 1,000,000,000"),
    ("- {name: c, k: 1000000000, c: 4, p: 4, r: 1}\n", "layer 1 'c': k must be an integer from 1 to 1,048,576"),
    ("- {name: big, gemm: {m: 1048576, k: 1048576, n: 1048576}}\n",
     "1,152,921,504,606,846,976 MACs, more than the limit of 1,125,899,906,842,624 (2**50) for one layer"),
    ("- {name: a, gemm: {m: 4, k: 4, n: 4}, count: 2000000000}\n",
     "count must be an integer from 1 to 1,073,741,824 (2**30); got 2,000,000,000"),
    ("- {name: a, gemm: {m: 1048576, k: 1048576, n: 1024}, count: 1073741824}\n",
     "MACs in all (count x MACs), more than the limit of 1,152,921,504,606,846,976 (2**60)"),
    ("- {name: a, gemm: {m: 4, k: 4, n: 4.5}}\n", "gemm.n must be an integer >= 1; got 4.5"),
    ("- {name: a, k: 4, c: 4, p: 4, r: 3, stride: 0}\n", "stride must be an integer from 1 to 16; got 0"),
])
def test_bad_layer_sizes_are_one_line(capsys, tmp_path, text, message):
    path = tmp_path / "net.yaml"
    path.write_text(text)
    one_line_error(capsys, [str(path)], message)
    with pytest.raises(WorkloadError):
        get_workload(str(path))


def test_fresh_bad_files_and_options(capsys, tmp_path):
    """Found trying it as a new user."""
    trunc = tmp_path / "trunc.json"
    trunc.write_text("[")
    one_line_error(capsys, [str(trunc)], "trunc.json:1: invalid JSON: Expecting value")
    one_line_error(capsys, ["resnet50", "--batch", "257"], "batch must be an integer from 1 to 256")
    one_line_error(capsys, [str(tmp_path / "missing.yaml")], "cannot read the workload file: No such file")
    g0 = tmp_path / "g0.yaml"
    g0.write_text("- {name: a, k: 4, c: 4, p: 4, r: 3, pad: 1, groups: 0}\n")
    one_line_error(capsys, [str(g0), "--batch", "2"], "batch 2 applies only to the built-in networks")
    pytest.importorskip("onnx")
    rand = tmp_path / "rand.onnx"
    rand.write_bytes(bytes(range(256)) * 2)
    one_line_error(capsys, [str(rand)], "not an ONNX model")
    one_line_error(capsys, ["import", str(rand), "--out", str(tmp_path / "x.txt")],
                   "a workload file name ends in .json, .yaml, .yml")
    one_line_error(capsys, ["import", str(rand), "--input-shape", "1,a,3"], "expected comma-separated integers")


def test_batch_has_a_range(capsys):
    one_line_error(capsys, ["bert", "--batch", "1000000000"],
                   f"batch must be an integer from 1 to {MAX_BATCH} (the built-in networks' limit); got 1000000000")
    one_line_error(capsys, ["--batch", str(MAX_BATCH + 1)], f"batch must be an integer from 1 to {MAX_BATCH}")
    one_line_error(capsys, ["unet", "--batch", "-3"], "batch must be an integer >= 1; got -3")
    layers = get_workload("bert", batch=MAX_BATCH)            # the largest batch is within the workload limits
    assert len(layers) <= MAX_WORKLOAD_LAYERS
    check_workload(layers)


def test_file_size_and_entry_limits(capsys, tmp_path):
    big = tmp_path / "big.json"
    with big.open("w") as f:                                  # one byte over the file limit
        f.write("[" + " " * MAX_FILE_BYTES + "]")
    one_line_error(capsys, [str(big)], f"cannot read the workload file: larger than {MAX_FILE_BYTES:,} bytes")
    many = tmp_path / "many.json"
    many.write_text("[" + ",".join(json.dumps({"name": f"l{i}", "gemm": {"m": 1, "k": 1, "n": 1}})
                                   for i in range(MAX_WORKLOAD_LAYERS + 1)) + "]")
    one_line_error(capsys, [str(many)], f"the workload has {MAX_WORKLOAD_LAYERS + 1:,} layers, more than the limit")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    one_line_error(capsys, [str(binary)], "cannot read the workload file: not a UTF-8 text file")
    one_line_error(capsys, [str(tmp_path)], "unknown workload")               # a directory is not a file


def test_check_workload_limits():
    layer = Layer.gemm("g", 4, 4, 4)
    check_workload([layer] * 10)
    with pytest.raises(LayerError, match="has 100,001 layers, more than the limit of 100,000"):
        check_workload([layer] * (MAX_WORKLOAD_LAYERS + 1), "net")
    heavy = Layer.gemm("h", 1 << 20, 1 << 20, 1 << 10, count=1 << 10)
    assert heavy.total_macs == MAX_WORKLOAD_MACS
    check_workload([heavy])
    with pytest.raises(LayerError, match=r"MACs in all"):
        check_workload([heavy, layer])


def test_import_bad_input_is_one_line(capsys, tmp_path):
    pytest.importorskip("onnx")
    one_line_error(capsys, ["import", str(tmp_path / "none.onnx")], "none.onnx")
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(capsys, ["import", str(tmp_path / "none.onnx"), "--out", str(afile / "w.yaml")],
                   "does not exist")
    one_line_error(capsys, ["import", str(tmp_path / "none.onnx"), "--input-shape", "1,3,2000000,1"],
                   "every dimension must be an integer from 1 to 1,000,000")


def test_closed_stdout_is_quiet():
    """``python -m search.workloads bert --batch 8 | head -2`` (190 KB, more than a pipe holds):
    no BrokenPipeError traceback, exit 0."""
    p = subprocess.Popen([sys.executable, "-m", "search.workloads", "bert", "--batch", "8"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = [p.stdout.readline(), p.stdout.readline()]
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0
    assert head[0].split()[:2] == [b"name", b"n"]
    assert err == ""
