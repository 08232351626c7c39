"""Discovery rules on hand-written transformer-style models (no transformers needed):
keyword inputs and tuple outputs, post-LN adds inside children, branches, stacks and the
false positives (activations and normalisations that add their input back)."""
import math

import pytest
import torch
import torch.nn as nn

from practise.blocks import find_blocks
from practise.surgery import PassThrough, ZeroBranch, drop_blocks
from practise.tracing import trace_model


class TanhGelu(nn.Module):
    """GPT-2's activation: computes x + 0.044715 * x**3 on the way."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GRN(nn.Module):
    """ConvNeXt-V2's global response normalisation: gamma * (x * Nx) + beta + x, parameters but no linear map."""

    def __init__(self, d):
        super().__init__()
        self.gamma, self.beta = nn.Parameter(torch.zeros(d)), nn.Parameter(torch.zeros(d))

    def forward(self, x):
        gx = x.norm(dim=1, keepdim=True)
        return self.gamma * (x * gx / (gx.mean(-1, keepdim=True) + 1e-6)) + self.beta + x


class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, hidden_states, attention_mask=None):
        q, k, v = self.qkv(hidden_states).chunk(3, -1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if attention_mask is not None:
            scores = scores + (1 - attention_mask[:, None, :]) * -1e4
        return self.out(torch.softmax(scores, -1) @ v), scores  # (hidden, attention weights)


class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.up, self.act, self.down = nn.Linear(d, 2 * d), TanhGelu(), nn.Linear(2 * d, d)

    def forward(self, x):
        return self.down(self.act(self.up(x)))


class PreNormLayer(nn.Module):
    """Called with keywords, returns (hidden, weights); adds two branches to its stream."""

    def __init__(self, d):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = nn.LayerNorm(d), Attention(d), nn.LayerNorm(d), MLP(d)
        self.scale = nn.Parameter(torch.ones(d))  # a layer scale between branch and add

    def forward(self, hidden_states, attention_mask=None, position_ids=None):
        attended, weights = self.attn(self.norm1(hidden_states), attention_mask=attention_mask)
        hidden_states = hidden_states + self.scale * attended
        return hidden_states + self.mlp(self.norm2(hidden_states)), weights


class SelfOutput(nn.Module):
    """BERT's: LN(dense(h) + input_tensor): the residual add happens here, not in the layer."""

    def __init__(self, d):
        super().__init__()
        self.dense, self.norm = nn.Linear(d, d), nn.LayerNorm(d)

    def forward(self, h, input_tensor):
        return self.norm(self.dense(h) + input_tensor)


class PostNormLayer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn, self.attn_out = Attention(d), SelfOutput(d)
        self.up, self.ffn_out = nn.Linear(d, 2 * d), SelfOutput(2 * d)
        self.ffn_out.dense = nn.Linear(2 * d, d)
        self.ffn_out.norm = nn.LayerNorm(d)

    def forward(self, x, mask=None):
        a = self.attn_out(self.attn(x, mask)[0], x)
        return (self.ffn_out(torch.relu(self.up(a)), a),)


class Encoder(nn.Module):
    def __init__(self, layer, d=16, depth=3, vocab=50, grn=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.grn = GRN(d) if grn else nn.Identity()
        self.layers = nn.ModuleList([layer(d) for _ in range(depth)])
        self.by_keyword = layer is PreNormLayer  # how this encoder calls its layers
        self.final = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        mask = torch.ones_like(ids, dtype=torch.float)
        x = self.grn(self.embed(ids))
        for layer in self.layers:
            if self.by_keyword:
                x, _ = layer(hidden_states=x, attention_mask=mask)
            else:
                x = layer(x, mask=mask)[0]
        return self.head(self.final(x))


class EinopsTransformer(nn.Module):
    """The einops ViT pattern: the stack itself adds each sub-layer's output to x."""

    def __init__(self, d=16, depth=3):
        super().__init__()
        self.layers = nn.ModuleList([nn.ModuleList([nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d)),
                                                    MLP(d)]) for _ in range(depth)])

    def forward(self, x):
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


IDS = torch.tensor([[3, 7, 11, 2, 9, 4]])


def names(model, x, granularity="layer"):
    return [b.name for b in find_blocks(model, x, granularity=granularity)]


def test_prenorm_layers_called_by_keyword_with_tuple_outputs_are_found_and_dropped():
    torch.manual_seed(0)
    model = Encoder(PreNormLayer).eval()
    assert names(model, IDS) == ["layers.0", "layers.1", "layers.2"]
    student = drop_blocks(model, ["layers.1"])
    assert isinstance(student.layers[1], PassThrough)
    with torch.no_grad():  # the caller unpacks (hidden, weights) from the stand-in as from the layer
        out = student(IDS)
    assert out.shape == model(IDS).shape and not torch.allclose(out, model(IDS))


def test_sublayers_are_the_branches_and_dropping_one_returns_zeros():
    torch.manual_seed(0)
    model = Encoder(PreNormLayer).eval()
    sub = find_blocks(model, IDS, granularity="sublayer")
    assert [b.name for b in sub] == [f"layers.{i}.{p}" for i in range(3) for p in ("attn", "mlp")]
    assert {b.removal for b in sub} == {"zero"}
    student = drop_blocks(model, ["layers.0.attn", "layers.0.mlp"])
    assert isinstance(student.layers[0].attn, ZeroBranch)
    with torch.no_grad():  # both branches gone: the same as dropping the whole layer
        assert torch.allclose(student(IDS), drop_blocks(model, ["layers.0"])(IDS), atol=1e-6)


def test_post_norm_layers_are_whole_units_with_the_add_inside_a_child():
    torch.manual_seed(0)
    model = Encoder(PostNormLayer).eval()
    assert names(model, IDS) == ["layers.0", "layers.1", "layers.2"]
    with torch.no_grad():
        assert drop_blocks(model, ["layers.2"])(IDS).shape == model(IDS).shape


def test_activations_and_normalisations_that_add_their_input_are_not_blocks(caplog):
    torch.manual_seed(0)
    model = Encoder(PreNormLayer, grn=True).eval()
    with caplog.at_level("INFO", logger="practise.blocks"):
        found = names(model, IDS, "sublayer")
    assert not any(n.endswith("act") or n == "grn" for n in found)
    trace = trace_model(model, IDS)
    assert "layers.0.mlp.act" in trace.rejected and "grn" in trace.rejected
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "not a candidate: grn (no linear map" in logged  # every such module says why


def test_stacks_are_not_blocks_their_layers_are():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), EinopsTransformer(), nn.LayerNorm(16)).eval()
    x = torch.randn(1, 5, 8)
    found = names(model, x)
    assert "1" not in found  # the whole encoder stack was once listed as one block
    assert found == [f"1.layers.{i}.{j}" for i in range(3) for j in (0, 1)]
    with torch.no_grad():
        assert drop_blocks(model, ["1.layers.1.0"])(x).shape == (1, 5, 16)


def test_feature_layer_of_a_token_model_is_the_final_hidden_state():
    torch.manual_seed(0)
    model = Encoder(PreNormLayer).eval()
    from practise.tracing import find_feature_layer

    assert find_feature_layer(model, trace_model(model, IDS)) == "final"  # not the vocabulary head


@pytest.mark.parametrize("layer", [PreNormLayer, PostNormLayer])
def test_dropping_leaves_the_model_and_its_call_sites_as_they_were(layer):
    torch.manual_seed(0)
    model = Encoder(layer).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    drop_blocks(model, ["layers.0"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, (PassThrough, ZeroBranch)) for m in model.modules())


def test_adaptors_wrap_keyword_called_layers_and_tuple_outputs():
    from practise.adaptors import TokenAdaptor, adaptor_sites, insert_adaptors_

    torch.manual_seed(0)
    model = Encoder(PreNormLayer).eval()
    trace = trace_model(model, IDS)
    sites = adaptor_sites(model, "layers.1", trace, trace.call_order)
    assert [(s.module, s.where, s.kind) for s in sites] == [("layers.0", "after", "token"),
                                                             ("layers.2", "before", "token")]
    student = drop_blocks(model, ["layers.1"])
    adaptors = insert_adaptors_(student, sites)
    assert all(isinstance(a, TokenAdaptor) for a in adaptors)
    with torch.no_grad():  # identity at the start: the student is the dropped model, exactly
        assert torch.allclose(student(IDS), drop_blocks(model, ["layers.1"])(IDS), atol=1e-6)
        adaptors[0].weight.mul_(2)
        assert not torch.allclose(student(IDS), drop_blocks(model, ["layers.1"])(IDS), atol=1e-4)
