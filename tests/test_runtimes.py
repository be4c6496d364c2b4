"""Runtimes (fast_nst.stylize.runtimes): ONNX Runtime behind the same network interface as the PyTorch kinds,
conditioned networks exported with their conditioning as graph inputs, and how runtime=auto /
onnx / onnx-int8 find, check and build an export's graphs."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from conftest import ROOT
from fast_nst import Stylizer
from fast_nst.io.errors import ConfigError
from fast_nst.io.export import export_network, read_export
from fast_nst.kinds import StyleNetwork, get_kind, register_kind
from fast_nst.kinds.base import embedding_feed
from fast_nst.stylize.onnx import INPUTS_KEY, OnnxNetwork, export_onnx, read_onnx_metadata
from fast_nst.io.paintings import resolve_painting
from fast_nst.stylize.runtimes import write_graphs

PAINTING = ROOT / "assets" / "styles" / "the_scream.jpg"


# ------------------------------------------------------------------ a conditioned kind, only here
@register_kind
class ColourEmbeddingNetwork(StyleNetwork):
    """Any painting through a 3-d "embedding" (its mean colour), as the magenta / style prediction
    kinds do with theirs; its strength moves the embedding towards the photo's own. Its ONNX
    export is the three short graph_* methods below."""

    kind = "colour_embedding_test"
    arbitrary_style = True
    strength_blends = False

    def __init__(self, styles, *, depth: int):
        super().__init__()
        self.styles, self.config = [], {"depth": depth}
        # 1x1 convs: the graph pads sides to a multiple of 4 and crops back, which a network with
        # wider kernels must match by padding the same way itself (as TransformerNet does)
        self.body = nn.Sequential(nn.Conv2d(6, depth, 1), nn.ReLU(), nn.Conv2d(depth, 3, 1))

    def embed(self, images):
        return images.mean((2, 3))

    def condition(self, style=None, style_weights=None, style_image=None, style_size=None):
        from fast_nst.io.images import load_rgb, pil_to_tensor

        return self.embed(pil_to_tensor(load_rgb(style_image, max_size=64)).unsqueeze(0))

    def forward(self, x, cond=None):
        e = cond.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return torch.sigmoid(self.body(torch.cat([x, e.expand(x.shape[0], -1, -1, -1)], 1)))

    def stylize(self, x, cond=None, strength=1.0):
        e = cond.expand(x.shape[0], -1)
        return self(x, torch.lerp(self.embed(x), e, strength) if strength < 1 else e)

    # ONNX: the graph takes the embedding; the painting's (and the photo's) stay in PyTorch
    def graph_inputs(self):
        return {"embedding": 3}

    def graph_feed(self, x, cond, strength):
        return {"embedding": embedding_feed(self, x, cond, strength)}

    def graph_forward(self, x, embedding):
        return self(x, embedding)


@register_kind
class NoGraphNetwork(StyleNetwork):
    kind = "no_graph_test"
    graph_export = False  # as adain: runs in PyTorch only

    def __init__(self, styles):
        super().__init__()
        self.styles, self.config = list(styles), {}
        self.scale = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, cond=None):
        return x * self.scale


def _tiny_cin():
    torch.manual_seed(0)
    two = [resolve_painting(n).with_hash() for n in ("udnie", "great_wave")]
    net = get_kind("cin")(two, width=0.25, upsample="nearest", num_res_blocks=1, tanh_scale=1.0).eval()
    for m in net.conditional_norms():
        nn.init.normal_(m.weight, 1.0, 0.5), nn.init.normal_(m.bias, 0.0, 0.5)
    return net


def _tiny_johnson(seed: int = 0):
    torch.manual_seed(seed)
    return get_kind("johnson")([resolve_painting("udnie")], width=0.125, norm="instance", upsample="nearest",
                               num_res_blocks=1, tanh_scale=1.0).eval()


def _close(a: Stylizer, b: Stylizer, x: torch.Tensor, **style) -> float:
    return float((a.stylize_tensor(x, **style) - b.stylize_tensor(x, **style)).abs().max())


def test_a_multi_style_graph_takes_the_mixing_weights_as_an_input(tmp_path):
    net = _tiny_cin()
    src = export_network(net, tmp_path / "two.safetensors", thumbnail_size=0)
    graph = write_graphs(src, net, read_export(src), ["onnx"])["onnx"]
    assert json.loads(read_onnx_metadata(graph)[INPUTS_KEY]) == {"style_weights": 2}
    torch_st = Stylizer.load(src, device="cpu")
    onnx_st = Stylizer.load(src, device="cpu", runtime="onnx")
    assert onnx_st.capabilities.runtime == "ONNX Runtime fp32" and onnx_st.styles == ["udnie", "great_wave"]
    x = torch.rand(2, 3, 37, 51, generator=torch.Generator().manual_seed(1))
    for style in ({"style": "udnie"}, {"style": "great_wave", "strength": 0.5},
                  {"style_weights": {"udnie": 0.3, "great_wave": 0.7}}):
        assert _close(onnx_st, torch_st, x, **style) < 1e-4, style
    # and the input matters: the two paintings give two pictures
    assert float((onnx_st.stylize_tensor(x, style="udnie") - onnx_st.stylize_tensor(x, style="great_wave")).abs().mean()) > 0.01
    # the graph file alone: the painting names come from its metadata
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "two.onnx").write_bytes(graph.read_bytes())
    bare = Stylizer.load(alone / "two.onnx", device="cpu")
    assert _close(bare, torch_st, x, style="great_wave") < 1e-4
    with pytest.raises(ValueError, match="knows udnie, great_wave"):
        bare.stylize_tensor(x, style="the_scream")


def test_a_kind_declares_its_graph_inputs_and_its_conditioning_stays_in_pytorch(tmp_path):
    torch.manual_seed(0)
    net = ColourEmbeddingNetwork([], depth=4).eval()
    src = export_network(net, tmp_path / "emb.safetensors", thumbnail_size=0)
    write_graphs(src, net, read_export(src), ["onnx"])
    torch_st, onnx_st = Stylizer.load(src, device="cpu"), Stylizer.load(src, device="cpu", runtime="onnx")
    assert isinstance(onnx_st.net, OnnxNetwork) and onnx_st.kind == "colour_embedding_test"
    x = torch.rand(1, 3, 30, 41, generator=torch.Generator().manual_seed(2))
    for strength in (1.0, 0.3):  # strength 0.3: the photo's own embedding, computed in PyTorch
        assert _close(onnx_st, torch_st, x, style_image=str(PAINTING), strength=strength) < 1e-4
    # an arbitrary-style graph needs its trained network to condition: loaded with it from beside the graph
    graph_only = Stylizer.load(tmp_path / "emb.onnx", device="cpu")
    assert _close(graph_only, torch_st, x, style_image=str(PAINTING)) < 1e-4
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "emb.onnx").write_bytes((tmp_path / "emb.onnx").read_bytes())
    with pytest.raises(ValueError, match="load it with ckpt=<the .safetensors> runtime=onnx"):
        Stylizer.load(lone / "emb.onnx", device="cpu")


def test_runtime_auto_uses_an_int8_graph_only_when_it_was_made_from_this_export(tmp_path, caplog):
    net = _tiny_johnson()
    src = export_network(net, tmp_path / "tiny.safetensors", thumbnail_size=0)
    st = Stylizer.load(src, device="cpu", runtime="auto")
    assert st.runtime == "torch" and "has no onnx-int8 graph yet" in st.runtime_note
    written = write_graphs(src, net, read_export(src))
    assert sorted(p.name for p in written.values()) == ["tiny.onnx", "tiny_int8.onnx"]
    st = Stylizer.load(src, device="cpu", runtime="auto")
    assert st.runtime == "onnx-int8" and st.capabilities.runtime == "ONNX Runtime int8" and not st.runtime_note
    assert Stylizer.load(src, device="cpu", runtime="auto", tile=256).runtime == "torch"  # tiles need PyTorch
    # a new export under the same name: the graphs beside it are stale, so auto runs PyTorch
    export_network(_tiny_johnson(seed=1), src, thumbnail_size=0)
    with caplog.at_level("WARNING", logger="fast_nst"):
        assert Stylizer.load(src, device="cpu", runtime="auto").runtime == "torch"
    assert "was not made from" in caplog.text


def test_named_runtimes_build_a_missing_graph_once_and_refuse_what_they_cannot_do(tmp_path, monkeypatch):
    monkeypatch.setenv("FAST_NST_CACHE", str(tmp_path / "cache"))
    net = _tiny_johnson()
    src = export_network(net, tmp_path / "tiny.safetensors", thumbnail_size=0)
    st = Stylizer.load(src, device="cpu", runtime="onnx")
    built = list((tmp_path / "cache" / "onnx").glob("tiny-*.onnx"))
    assert len(built) == 1 and not (tmp_path / "tiny.onnx").exists()  # into the cache, not beside the export
    mtime = built[0].stat().st_mtime_ns
    x = torch.rand(1, 3, 20, 28)
    assert _close(st, Stylizer.load(src, device="cpu"), x) < 1e-4
    assert Stylizer.load(src, device="cpu", runtime="onnx").runtime == "onnx"
    assert built[0].stat().st_mtime_ns == mtime  # found, not rebuilt
    with pytest.raises(ConfigError, match="cannot do tile=: that needs runtime=torch"):
        Stylizer.load(src, device="cpu", runtime="onnx", tile=256)
    with pytest.raises(ConfigError, match="runs on the CPU; device=cuda needs runtime=torch"):
        Stylizer.load(src, device="cuda", runtime="onnx-int8")
    with pytest.raises(ConfigError, match="runtime=fast: choose one of auto, torch, onnx, onnx-int8"):
        Stylizer.load(src, runtime="fast")
    plain = export_network(NoGraphNetwork([]), tmp_path / "plain.safetensors", thumbnail_size=0)
    with pytest.raises(ConfigError, match="no_graph_test networks are not exported to ONNX; use runtime=torch"):
        Stylizer.load(plain, device="cpu", runtime="onnx")
    assert Stylizer.load(plain, device="cpu", runtime="auto").runtime == "torch"
    with pytest.raises(ConfigError, match="is an ONNX graph; runtime=torch needs the .safetensors"):
        Stylizer.load(built[0], runtime="torch")


def test_stylizer_names_no_runtime_and_no_kind():
    """The walk photo -> Stylizer -> network goes through the network interface only (issue 22)."""
    from fast_nst.kinds import available_kinds

    import ast

    tree = ast.parse((ROOT / "fast_nst" / "stylize" / "stylizer.py").read_text())
    for node in ast.walk(tree):  # the code, not its docstrings (which may give examples)
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            node.body = body[1:] or [ast.Pass()]
    code = ast.unparse(tree)  # and without comments
    assert not re.search(r"isinstance\([^)]*net|getattr\(self\.net|hasattr\(self\.net|Onnx|onnx", code)
    assert not [k for k in available_kinds() if re.search(rf"[\"']{k}[\"']", code)]


def test_instance_norms_export_as_one_operator(tmp_path):
    import onnx

    path = export_onnx(_tiny_johnson(), tmp_path / "t.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    # 3 in the encoder, 2 in the residual block, 2 in the decoder; no hand-written statistics
    assert ops.count("InstanceNormalization") == 7 and "ReduceMean" not in ops
