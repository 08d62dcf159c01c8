"""search.importers: networks written in plain torch (no torchvision, no downloads),
exported to ONNX in the test's folder or traced with torch.fx, import to exactly the
layer tables of the built-in workloads (an independent definition of the same
networks); bad models and arguments fail with one line naming the node; imported
models run through every command that takes a workload."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from hw.layer import Layer
from search import collect as search_collect
from search.importers import (
    MAX_INPUT_DIM,
    ImportedModel,
    import_onnx,
    import_torch,
    parse_input_shape,
)
from search.importers import ops
from search.workload_file import WorkloadError, load_workload_file
from search.workloads import (
    bert,
    get_workload,
    main,
    mobilenetv2,
    resnet50,
    total_macs,
    unet,
    unique_layers,
)


# ---- the networks, in plain torch ---------------------------------------------------------
class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride on the 3x3, a 1x1 projection shortcut."""

    def __init__(self, cin: int, width: int, stride: int, project: bool):
        super().__init__()
        out = 4 * width
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                           if project else None)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        cin = 64
        for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, 2 if stage > 1 and b == 0 else 1, b == 0))
                cin = 4 * width
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, 1000)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class BertLayer(nn.Module):
    """One BERT-base encoder layer as HF writes it: Linear Q/K/V, per-head matmuls, FFN."""

    def __init__(self, d: int = 768, heads: int = 12, ff: int = 3072):
        super().__init__()
        self.d, self.heads = d, heads
        self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        b, s, hd = x.size(0), x.size(1), self.d // self.heads

        def split(t):
            return t.view(b, s, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd)
        ctx = torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(b, s, self.d)
        x = self.ln1(x + self.out(ctx))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion (absent for t = 1), 3x3 depthwise, 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers = [] if t == 1 else [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        layers, cin = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()], 32
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)):
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def export(module: nn.Module, shape, path, **kwargs):
    """torch.onnx's TorchScript exporter (it needs nothing beyond torch and onnx)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(shape),), str(path), dynamo=False,
                          input_names=["x"], **kwargs)
    return path


def table(layers):
    """What a layer costs, in order: (shape, count)."""
    return [(layer.shape(), layer.count) for layer in layers]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return captured.err.removeprefix("error: ").rstrip("\n")


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    torch.manual_seed(0)
    return export(ResNet50(), (1, 3, 224, 224), tmp_path_factory.mktemp("resnet") / "resnet50.onnx")


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory):
    """A BERT-base layer with dynamic batch and sequence axes."""
    torch.manual_seed(0)
    return export(BertLayer(), (1, 128, 768), tmp_path_factory.mktemp("bert") / "bert_layer.onnx",
                  dynamic_axes={"x": {0: "batch", 1: "tokens"}})


# ---- ResNet-50 ------------------------------------------------------------------------------
def test_resnet50_from_onnx_is_the_builtin_table(resnet_onnx):
    model = import_onnx(resnet_onnx)
    want = unique_layers(resnet50())
    assert table(model.layers) == table(want)
    assert sum(l.count for l in model.layers) == 54 and len(model.layers) == 24
    assert len(model.node_layers) == 54 and all(l.count == 1 for l in model.node_layers)
    assert model.total_macs == total_macs(model.layers) == 4_089_184_256
    # torch.onnx's scope names become the module paths the built-in table uses.
    assert [l.name for l in model.node_layers[:5]] == [l.name for l in resnet50()[:4]] + ["layer1.0.downsample.0"]
    skipped = dict(model.skipped)
    assert skipped["Relu"] == 49 and skipped["Add"] == 16
    assert skipped["MaxPool"] == 1 and skipped["GlobalAveragePool"] == 1 and skipped["Flatten"] == 1
    assert model.skipped_nodes == sum(skipped.values())
    # get_workload reads the file directly: the merged table.
    assert get_workload(resnet_onnx) == model.layers == get_workload(str(resnet_onnx))


def test_resnet50_from_torch_fx_is_the_builtin_table():
    model = import_torch(ResNet50(), (1, 3, 224, 224))
    assert table(model.layers) == table(unique_layers(resnet50()))
    assert model.total_macs == 4_089_184_256
    names = [l.name.replace("downsample.0", "downsample") for l in model.node_layers]
    assert names == [l.name for l in resnet50()]              # fx targets are the module paths
    assert dict(model.skipped) == {"BatchNorm2d": 53, "ReLU": 49, "add": 16, "MaxPool2d": 1,
                                   "AdaptiveAvgPool2d": 1, "flatten": 1}
    assert model.source == "ResNet50"


# ---- BERT -----------------------------------------------------------------------------------
def test_bert_layer_imports_with_the_builtin_shapes(bert_onnx):
    want = unique_layers(bert(layers=1))                  # Q, K, V, out; 12 scores; 12 contexts; FF1; FF2
    from_onnx = import_onnx(bert_onnx, [(1, 128, 768)])
    from_fx = import_torch(BertLayer(), torch.zeros(1, 128, 768))
    for model in (from_onnx, from_fx):
        assert table(model.layers) == table(want)
        assert model.total_macs * 12 == total_macs(bert()) == 11_173_625_856
        # The two attention products are one batched node each: a GEMM per head.
        scores = [l for l in model.node_layers if l.count == 12]
        assert [l.gemm_shape for l in scores] == [(128, 64, 128), (128, 128, 64)]
    assert [l.name for l in from_fx.layers] == ["query", "matmul", "matmul_1", "fc1", "fc2"]
    assert [l.name for l in from_onnx.layers] == ["query", "MatMul", "MatMul_1", "fc1", "fc2"]
    # Batch 2 through the dynamic batch axis: the projections' rows double, the heads' GEMMs count 24.
    assert table(import_onnx(bert_onnx, [(2, 128, 768)]).layers) == table(unique_layers(bert(batch=2, layers=1)))


def test_attention_forms_in_torch_give_the_builtin_gemms():
    attention = [l for l in unique_layers(bert(layers=1)) if "ffn" not in l.name]

    mha = import_torch(nn.MultiheadAttention(768, 12), ((128, 1, 768),) * 3)
    assert table(mha.layers) == table(attention)
    assert [l.name for l in mha.node_layers] == [f"MultiheadAttention.{x}" for x in
                                                 ("query", "key", "value", "scores", "context", "out")]

    class SDPA(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    sdpa = import_torch(SDPA(), ((1, 12, 128, 64),) * 3)
    assert table(sdpa.layers) == table(attention[1:])      # the scores and context GEMMs, x12


def test_matmul_rule_against_hand_counts():
    gemm = lambda m, k, n, count=1: (Layer.gemm("g", m=m, k=k, n=n).shape(), count)  # noqa: E731
    cases = {
        ((2, 128, 768), (768, 768)): gemm(256, 768, 768),           # Linear: tokens of all samples
        ((2, 12, 128, 64), (2, 12, 64, 128)): gemm(128, 64, 128, 24),  # one GEMM per sample and head
        ((12, 128, 64), (1, 64, 128)): gemm(1536, 64, 128),         # B shared: stack A's rows
        ((128, 64), (12, 64, 32)): gemm(128, 64, 384),              # A shared: stack B's columns
        ((64,), (64, 10)): gemm(1, 64, 10),                          # 1-D operands as numpy does
        ((5, 64), (64,)): gemm(5, 64, 1),
    }
    for (a, b), want in cases.items():
        layer = ops.matmul("t", "g", a, b)
        assert (layer.shape(), layer.count) == want, (a, b)
    with pytest.raises(WorkloadError, match=r"^t: batch dimensions do not broadcast: \(2, 3, 4\) @ \(5, 4, 3\)$"):
        ops.matmul("t", "g", (2, 3, 4), (5, 4, 3))
    with pytest.raises(WorkloadError, match=r"^t: inner dimensions differ"):
        ops.matmul("t", "g", (3, 4), (5, 3))


# ---- MobileNetV2 and transposed convolutions -------------------------------------------------
def test_mobilenetv2_block_from_onnx_is_the_builtin_block(tmp_path):
    builtin = mobilenetv2()
    for block, (cin, cout, stride, t, size) in {2: (16, 24, 2, 6, 112), 1: (32, 16, 1, 1, 112),
                                                 4: (24, 32, 2, 6, 56)}.items():
        path = export(InvertedResidual(cin, cout, stride, t), (1, cin, size, size), tmp_path / f"b{block}.onnx")
        model = import_onnx(path)
        want = [l for l in builtin if l.name.startswith(f"block{block}.")]
        assert table(model.node_layers) == table(want), block
        dw = model.node_layers[-2]
        assert dw.groups == dw.c == dw.k == cin * t and dw.r == 3 and dw.stride == stride


def test_mobilenetv2_from_torch_fx_and_onnx_is_the_builtin_table(tmp_path):
    want = table(unique_layers(mobilenetv2()))
    torch.manual_seed(0)
    net = MobileNetV2()
    assert table(import_torch(net, torch.zeros(1, 3, 224, 224)).layers) == want
    model = import_onnx(export(net, (1, 3, 224, 224), tmp_path / "mbv2.onnx"))
    assert table(model.layers) == want and model.total_macs == 300_774_272
    assert sum(l.count for l in model.layers) == 53


def test_transposed_conv_is_unets_up_layer(tmp_path):
    up4 = next(l for l in unet() if l.name == "up4")       # 2x2/2 transposed conv 1024 -> 512 at 16 x 16
    up = nn.ConvTranspose2d(1024, 512, 2, stride=2)
    assert table(import_torch(up, (1, 1024, 16, 16)).node_layers) == table([up4])
    assert table(import_onnx(export(up, (1, 1024, 16, 16), tmp_path / "up.onnx")).node_layers) == table([up4])
    with pytest.raises(WorkloadError, match=r"node 'ConvTranspose2d' \(ConvTranspose2d\): a transposed "
                                            r"convolution with strides \(2, 2\), kernel \(3, 3\)"):
        import_torch(nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1), (1, 8, 8, 8))


# ---- bad models -----------------------------------------------------------------------------
def test_dynamic_shapes_need_an_input_shape(bert_onnx, capsys):
    with pytest.raises(WorkloadError, match=r"^.*bert_layer.onnx: input 'x' has dynamic dimension 0 \('batch'\); "
                                            r"give the input's shape with --input-shape \(e.g. --input-shape "
                                            r"1,1,768\)$"):
        import_onnx(bert_onnx)
    assert main(["import", str(bert_onnx)]) == 2
    assert "input 'x' has dynamic dimension 0 ('batch')" in one_error_line(capsys)
    # A command that takes a workload has no --input-shape: it says how to write a workload file.
    with pytest.raises(WorkloadError, match=r"bert_layer.onnx: input 'x' has dynamic dimension 0 \('batch'\); "
                                            r"write a workload file with its input shape: python -m "
                                            r"search.workloads import .*bert_layer.onnx --input-shape 1,1,768 "
                                            r"--out FILE.yaml$"):
        get_workload(bert_onnx)
    # Shapes the model fixes cannot change; the rank and the number of inputs must match.
    for shapes, message in (([(1, 128, 512)], "input 'x' has dimension 2 = 768 in the model; --input-shape gives 512"),
                            ([(1, 768)], "input 'x' has 3 dimensions; --input-shape gives 2 (1,768)"),
                            ([(1, 128, 768)] * 2, "the model has 1 input(s) ('x'); --input-shape gives 2")):
        with pytest.raises(WorkloadError, match=r"bert_layer.onnx: " + message.replace("(", r"\(").replace(")", r"\)")):
            import_onnx(bert_onnx, shapes)


def test_unsupported_conv_attributes_name_the_node(tmp_path, capsys):
    cases = {  # module, input shape, what is unsupported
        "dilated": (nn.Conv2d(3, 8, 3, dilation=2), (1, 3, 16, 16), "dilations (2, 2) are not supported"),
        "strided": (nn.Conv2d(3, 8, 3, stride=(1, 2)), (1, 3, 16, 16),
                    "strides (1, 2) differ between height and width"),
        "padded": (nn.Conv2d(3, 8, (3, 5), padding=(1, 2)), (1, 3, 16, 16),
                   "padding 1 (height) != 2 (width) is not supported"),
        "conv1d": (nn.Conv1d(3, 8, 3), (1, 3, 16),
                   "a convolution with 1 spatial dimension(s) is not supported (only 2-D, NCHW)"),
    }
    for name, (module, shape, problem) in cases.items():
        path = export(module, shape, tmp_path / f"{name}.onnx")
        message = f"{path}: node '/Conv' (Conv): {problem}"
        with pytest.raises(WorkloadError) as info:
            import_onnx(path)
        assert str(info.value).startswith(message)
        assert main(["import", str(path)]) == 2
        assert one_error_line(capsys).startswith(message)
        # The same module through torch.fx: the node is the fx target.
        kind = type(module).__name__
        with pytest.raises(WorkloadError) as info:
            import_torch(module, shape)
        assert str(info.value).startswith(f"{kind}: node '{kind}' ({kind}): {problem}")


def _conv_model(path, pads=None, auto_pad=None):
    """A hand-built ONNX Conv (torch cannot export asymmetric conv padding)."""
    attrs = {"pads": pads} if pads is not None else {"auto_pad": auto_pad}
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="odd_conv", kernel_shape=[3, 3], **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [8, 4, 3, 3], [0.0] * 288)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_asymmetric_padding_is_refused_and_symmetric_same_accepted(tmp_path):
    with pytest.raises(WorkloadError, match=r"node 'odd_conv' \(Conv\): asymmetric padding \(0, 0, 1, 1\) "
                                            r"\(top, left, bottom, right\) is not supported"):
        import_onnx(_conv_model(tmp_path / "asym.onnx", pads=[0, 0, 1, 1]))
    same = table([Layer.conv("c", k=8, c=4, r=3, h=10, padding=1)])
    assert table(import_onnx(_conv_model(tmp_path / "same.onnx", auto_pad="SAME_UPPER")).layers) == same
    assert table(import_torch(nn.Conv2d(4, 8, 3, padding="same"), (1, 4, 10, 10)).layers) == same
    with pytest.raises(WorkloadError, match=r"^Conv2d: node 'Conv2d' \(Conv2d\): asymmetric padding \(1, 1, 2, 2\)"):
        with warnings.catch_warnings():                    # torch warns of the copy it would make
            warnings.simplefilter("ignore")
            import_torch(nn.Conv2d(4, 8, 4, padding="same"), (1, 4, 10, 10))   # even kernel: one more at the end


def test_ops_that_multiply_but_have_no_layer_are_refused(tmp_path):
    class Einsum(nn.Module):
        def forward(self, x):
            return torch.einsum("bij,bjk->bik", x, x)

    path = export(Einsum(), (2, 4, 4), tmp_path / "einsum.onnx")
    with pytest.raises(WorkloadError, match=r"einsum.onnx: node '/Einsum' \(Einsum\): Einsum is not supported"):
        import_onnx(path)
    with pytest.raises(WorkloadError, match=r"^Einsum: node 'einsum' \(einsum\): einsum is not supported"):
        import_torch(Einsum(), (2, 4, 4))
    with pytest.raises(WorkloadError, match=r"^LSTM: node 'LSTM' \(LSTM\): recurrent layers"):
        import_torch(nn.LSTM(8, 8), (5, 1, 8))

    class Branchy(nn.Module):                              # control flow on values: not traceable
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(WorkloadError, match=r"^Branchy: torch.fx cannot trace the module \(.*\); export it"):
        import_torch(Branchy(), (2, 2))
    with pytest.raises(WorkloadError, match=r"^Relu6: no MAC layers .*; its ops: ReLU6 1$"):
        import_torch(nn.ReLU6(), (2, 2), source="Relu6")


def test_files_that_are_not_models(tmp_path, capsys):
    text = tmp_path / "notes.onnx"
    text.write_text("these are my notes, not a model\n")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    cases = {str(text): "not an ONNX model (cannot parse it: ",
             str(empty): "not an ONNX model (no IR version, opset or graph nodes)",
             str(tmp_path / "missing.onnx"): "cannot read the model: No such file or directory",
             str(tmp_path): "is a directory, not an ONNX file"}
    for path, message in cases.items():
        assert main(["import", path]) == 2
        assert one_error_line(capsys).startswith(f"{path}: {message}")
        with pytest.raises(WorkloadError, match="not an ONNX model|cannot read|is a directory|unknown workload"):
            get_workload(path)
    # A real process: one line on stderr, exit status 2, no traceback.
    proc = subprocess.run([sys.executable, "-m", "search.workloads", "import", str(text)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {text}: not an ONNX model") and proc.stderr.count("\n") == 1


def test_bad_input_shapes_and_outputs(resnet_onnx, tmp_path, capsys):
    for text, message in (("1,3,x,224", "expected comma-separated integers such as 1,3,224,224"),
                          ("", "expected comma-separated integers"),
                          ("1,0,224,224", f"every dimension must be an integer from 1 to {MAX_INPUT_DIM:,}; got 0"),
                          ("1,3,2000000,1", "every dimension must be an integer from 1 to 1,000,000; got 2000000"),
                          ("1000,1000,1000,1000", "1,000,000,000,000 elements is more than the limit of "
                                                  "2,147,483,648 for one input")):
        with pytest.raises(WorkloadError, match=message):
            parse_input_shape(text)
        assert main(["import", str(resnet_onnx), "--input-shape", text]) == 2
        assert message in one_error_line(capsys)
    for out, message in ((tmp_path, "is a directory; give a file name ending in .json, .yaml, .yml"),
                         (tmp_path / "w.txt", "a workload file name ends in .json, .yaml, .yml"),
                         (tmp_path / "no" / "w.yaml", "does not exist")):
        assert main(["import", str(resnet_onnx), "--out", str(out)]) == 2
        err = one_error_line(capsys)
        assert err.startswith(f"--out {out}: ") and message in err
    assert not list(tmp_path.iterdir())                   # nothing was written


# ---- the CLI and the commands that take a workload ------------------------------------------
def test_cli_import_prints_the_table_and_writes_a_workload(resnet_onnx, tmp_path, capsys):
    out = tmp_path / "resnet50.yaml"
    assert main(["import", str(resnet_onnx), "--input-shape", "1,3,224,224", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "n", "k", "c", "p", "q", "r", "s", "stride", "pad", "groups", "count", "MACs"]
    assert lines[1].split() == ["conv1", "1", "64", "3", "112", "112", "7", "7", "2", "3", "1", "1", "118,013,952"]
    assert len(lines) == 1 + 24 + 1 + 4 + 1
    assert lines[-5:-2] == ["layers         54", "unique layers  24", "total MACs     4,089,184,256 (4.089 G)"]
    assert lines[-2].startswith("skipped ops    ") and "Relu 49" in lines[-2] and "MaxPool 1" in lines[-2]
    assert lines[-1] == f"wrote {out}"
    text = out.read_text()
    assert text.startswith(f"# Imported from {resnet_onnx} by python -m search.workloads import "
                           "--input-shape 1,3,224,224:\n# 54 layers, 24 unique, 4,089,184,256 MACs.\n")
    written = load_workload_file(out)
    assert written == get_workload(str(out)) == import_onnx(resnet_onnx).layers
    # JSON too, and the display command reads the model and the file alike.
    assert main(["import", str(resnet_onnx), "--out", str(tmp_path / "r.json")]) == 0
    capsys.readouterr()
    assert load_workload_file(tmp_path / "r.json") == written
    assert main([str(resnet_onnx), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((tmp_path / "r.json").read_text())


def test_cost_run_takes_the_model_as_a_workload(resnet_onnx, tmp_path, capsys):
    from cost.run import main as cost_main

    yaml_path = tmp_path / "resnet50.yaml"
    assert main(["import", str(resnet_onnx), "--out", str(yaml_path)]) == 0
    capsys.readouterr()
    docs = []
    for workload in (resnet_onnx, yaml_path, "resnet50"):
        assert cost_main(["--dim", "16", "--workload", str(workload), "--json"]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    onnx_doc, yaml_doc, builtin_doc = docs
    assert onnx_doc == yaml_doc
    assert onnx_doc["total"] == builtin_doc["total"]      # the same network, costed the same
    assert sum(e["count"] * e["counts"]["macs"] for e in onnx_doc["layers"]) == 4_089_184_256


def test_search_collect_takes_the_model_as_a_workload(tmp_path, capsys):
    # A model with static shapes, a BERT layer at 64 tokens, and the built-in bert side by side.
    path = export(BertLayer(), (1, 64, 768), tmp_path / "bert64.onnx")
    imported = import_onnx(path).layers
    assert search_collect.main(["--fidelity", "analytical", "--workloads", f"{path},bert", "--n", "64",
                                "--seed", "0", "--out", str(tmp_path / "data"), "--workers", "1",
                                "--quiet"]) == 0
    capsys.readouterr()
    layers, entries, _ = search_collect.space_layers([str(path), "bert"])
    assert layers[:len(imported)] == imported
    # At 64 tokens the scores (64 x 64 @ 64 x 64) and context GEMMs have one shape: 24 per layer.
    assert [e["workloads"][str(path)]["count"] for e in entries[:len(imported)]] == [4, 24, 1, 1]
    assert search_collect.main(["--summary", str(tmp_path / "data")]) == 0
    assert "samples   64 of n = 64" in capsys.readouterr().out


def test_imported_model_is_a_frozen_record():
    model = import_torch(nn.Linear(8, 4), (3, 8), source="tiny")
    assert isinstance(model, ImportedModel) and model.source == "tiny"
    assert table(model.layers) == table([Layer.gemm("g", m=3, k=8, n=4)])
    with pytest.raises(AttributeError):
        model.source = "other"
