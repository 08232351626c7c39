"""Families whose layers are described by index, shared between layers or hidden from hooks:
the right candidates, drops that run, and a saved folder that reloads as the pruned model
(stock where the shorter model is what its config says, else the practise form, announced),
with greedy generation the same with and without the KV cache."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from practise.blocks import find_blocks  # noqa: E402
from practise.errors import UsageError  # noqa: E402
from practise.pipeline import inspect_model  # noqa: E402
from practise.surgery import drop_blocks  # noqa: E402
from practise.text import SequenceModel  # noqa: E402
from practise.text.saving import PRACTISE, STOCK, load_pretrained, save_pretrained  # noqa: E402
from practise.text.verify import GENERATION_OK, outputs, seeded_tokens  # noqa: E402

T = transformers
S = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=120)
SPECIAL = dict(pad_token_id=0, eos_token_id=1, bos_token_id=2)
FAMILIES = {
    # an MoE decoder whose first layer is dense, by index
    "qwen2moe": lambda: T.Qwen2MoeForCausalLM(T.Qwen2MoeConfig(
        **S, num_hidden_layers=4, num_key_value_heads=1, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
        shared_expert_intermediate_size=16, mlp_only_layers=[0], **SPECIAL)),
    # ... by a count of leading dense layers
    "deepseekv3": lambda: T.DeepseekV3ForCausalLM(T.DeepseekV3Config(
        **S, num_hidden_layers=4, num_key_value_heads=2, n_routed_experts=4, num_experts_per_tok=2,
        moe_intermediate_size=16, first_k_dense_replace=1, n_group=1, topk_group=1, q_lora_rank=None,
        kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, **SPECIAL)),
    # a hybrid whose attention layers are listed by index among state-space layers
    "bamba": lambda: T.BambaForCausalLM(T.BambaConfig(
        **S, num_hidden_layers=4, num_key_value_heads=1, attn_layer_indices=[1, 3], mamba_n_heads=4, mamba_d_head=16,
        mamba_d_state=8, mamba_chunk_size=8, mamba_n_groups=1, **SPECIAL)),
    # per-layer attention kinds and a cache slot named layer_id
    "gptneo": lambda: T.GPTNeoForCausalLM(T.GPTNeoConfig(
        vocab_size=120, hidden_size=32, num_layers=4, num_heads=2, attention_types=[[["global", "local"], 2]],
        window_size=4, **SPECIAL)),
    # layers whose kind follows their position, and an attribute the model reads off each layer
    "modernbert": lambda: T.ModernBertModel(T.ModernBertConfig(
        **S, num_hidden_layers=4, global_attn_every_n_layers=2, local_attention=4, cls_token_id=2, sep_token_id=1,
        **SPECIAL)),
    "deberta": lambda: T.DebertaV2Model(T.DebertaV2Config(**S, num_hidden_layers=4, **SPECIAL)),
    # blocks of two residual sub-layers; the first computes a position bias the others reuse
    "t5": lambda: T.T5EncoderModel(T.T5Config(vocab_size=120, d_model=32, d_kv=16, d_ff=64, num_layers=4,
                                              num_heads=2)),
}
CAUSAL = {"qwen2moe", "deepseekv3", "bamba", "gptneo"}
EXPECTED = {  # candidates at layer granularity, without the "model." prefix of the wrapper
    "qwen2moe": [f"model.layers.{i}" for i in range(4)],
    "deepseekv3": [f"model.layers.{i}" for i in range(4)],
    "bamba": [f"model.layers.{i}" for i in range(4)],
    "gptneo": [f"transformer.h.{i}" for i in range(4)],
    "modernbert": [f"layers.{i}" for i in range(4)],
    "deberta": [f"encoder.layer.{i}" for i in range(4)],
    # block 0 makes the relative position bias: only its feed-forward part can go
    "t5": ["encoder.block.0.layer.1"] + [f"encoder.block.{i}" for i in range(1, 4)],
}


def build(name):
    torch.manual_seed(0)
    return SequenceModel(FAMILIES[name]().eval())


@pytest.mark.parametrize("name", list(FAMILIES))
def test_candidates_drops_and_saved_folders_reload_as_the_pruned_model(name, tmp_path):
    model = build(name)
    x = model.practise_example_input(1, (2, 8), torch.Generator().manual_seed(0))
    names = [b.name[len("model."):] for b in find_blocks(model, x)]
    assert names == EXPECTED[name]
    for drop in (names[0], names[2]):
        student = drop_blocks(model, [f"model.{drop}"])
        saved = save_pretrained(student.model, None, tmp_path / drop)
        assert saved.form in (STOCK, PRACTISE) and (saved.form == STOCK) == (saved.reason is None)
        reloaded = load_pretrained(saved.path)
        ids = seeded_tokens(student.model)
        assert torch.allclose(outputs(reloaded, ids), outputs(student.model, ids), atol=1e-5)
        if name in CAUSAL:
            assert saved.generation == GENERATION_OK
        if saved.form == PRACTISE:  # stock loading refuses it instead of filling the gap with random weights
            with pytest.raises(Exception):
                T.AutoModel.from_pretrained(saved.path, local_files_only=True)


def test_index_based_layouts_are_remapped_to_stay_stock(tmp_path):
    """Dropping the dense first layer of an MoE decoder: its index list becomes empty."""
    model = build("qwen2moe")
    saved = save_pretrained(drop_blocks(model, ["model.model.layers.0"]).model, None, tmp_path / "out")
    assert saved.form == STOCK
    reloaded = T.AutoModelForCausalLM.from_pretrained(saved.path, local_files_only=True)
    assert reloaded.config.mlp_only_layers == [] and reloaded.config.num_hidden_layers == 3


def test_a_position_dependent_layout_is_saved_in_the_practise_form_with_a_reason(tmp_path, caplog):
    model = build("modernbert")  # layer 0 has no attention norm, by position: removing it shifts that
    with caplog.at_level("WARNING"):
        saved = save_pretrained(drop_blocks(model, ["model.layers.0"]).model, None, tmp_path / "out")
    assert saved.form == PRACTISE and "would not reload" in saved.reason and "practise form" in caplog.text


def test_layers_called_without_hooks_are_not_offered_whole():
    """SqueezeBERT's encoder calls its layers through .forward(): the encoder is not one block."""
    torch.manual_seed(0)
    model = SequenceModel(T.SqueezeBertModel(T.SqueezeBertConfig(**S, num_hidden_layers=4, embedding_size=32)).eval())
    x = model.practise_example_input(1, (2, 8), torch.Generator().manual_seed(0))
    assert find_blocks(model, x) == []
    with pytest.raises(UsageError, match="no droppable residual blocks"):
        inspect_model(model, (2, 8))


def test_sublayers_of_a_t5_block_are_its_parts():
    model = build("t5")
    x = model.practise_example_input(1, (2, 8), torch.Generator().manual_seed(0))
    names = [b.name for b in find_blocks(model, x, granularity="sublayer")]
    assert "model.encoder.block.1.layer.0" in names and "model.encoder.block.1.layer.1" in names
    assert "model.encoder.block.0.layer.0" not in names  # it makes the position bias the others read


def practise_folder(tmp_path):
    model = build("gptneo")
    x = model.practise_example_input(1, (2, 8), torch.Generator().manual_seed(0))
    attention = [b.name for b in find_blocks(model, x, granularity="sublayer") if b.name.endswith("attn")][0]
    student = drop_blocks(model, [attention])
    saved = save_pretrained(student.model, None, tmp_path / "out")
    return student, saved


def test_a_practise_form_folder_given_back_as_hf_keeps_its_drops(tmp_path):
    from practise.text.loading import load_hf

    student, saved = practise_folder(tmp_path)
    assert saved.form == PRACTISE and "sub-layers" in saved.reason
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    T.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(saved.path)
    bundle = load_hf(f"hf:{saved.path}")  # the dropped attention stays dropped
    ids = seeded_tokens(student.model)
    assert torch.allclose(outputs(bundle.model.model, ids), outputs(student.model, ids), atol=1e-5)


@pytest.mark.parametrize("edit, message", [
    (lambda side: side["dropped"].update({"lm_head": {"kind": "zero_branch", "output": {"kind": "tensor", "length": 1}}}),
     "lm_head is not a droppable module"),
    (lambda side: side["dropped"].update({"transformer.h.1": {"kind": "pass_through",
                                                               "output": {"kind": "tuple", "length": 10 ** 6}}}),
     "length from 1 to 64"),
    (lambda side: side["dropped"].update({"../x": {"kind": "pass_through", "output": {"kind": "tensor", "length": 1}}}),
     "not a module name"),
    (lambda side: side.update({"format": "something/9"}), "not a practise-hf/1 file"),
])
def test_practise_json_is_checked_against_its_schema(tmp_path, edit, message):
    import json

    from practise.errors import UntrustedFile

    _, saved = practise_folder(tmp_path)
    side = json.loads((saved.path / "practise.json").read_text())
    edit(side)
    (saved.path / "practise.json").write_text(json.dumps(side))
    with pytest.raises(UntrustedFile, match=message):
        load_pretrained(saved.path)


@pytest.mark.parametrize("change, message", [({"num_hidden_layers": 1_000_000}, "describes 1000000 layers"),
                                              ({"hidden_size": 1 << 20}, "larger than any weight's dimension")])
def test_a_config_far_beyond_its_weights_is_refused_before_building(tmp_path, change, message):
    import json

    from practise.errors import UntrustedFile

    T.LlamaForCausalLM(T.LlamaConfig(**S, num_hidden_layers=2, num_key_value_heads=1)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(UntrustedFile, match=message):
        load_pretrained(tmp_path)


def test_a_sequence_longer_than_the_position_table_is_refused_up_front():
    model = build("gptneo")  # 2048 positions by default
    with pytest.raises(UsageError, match="longer than the 2048 positions"):
        inspect_model(model, (2, 100_000))


def test_folders_of_an_earlier_practise_load_when_stock_and_are_refused_otherwise(tmp_path):
    import json

    from practise.errors import UntrustedFile

    model = build("gptneo")
    saved = save_pretrained(drop_blocks(model, ["model.transformer.h.1"]).model, None, tmp_path / "out")
    assert saved.form == STOCK
    legacy = {"removed_layers": {"transformer.h": [1]}, "zero_branches": {}, "pass_throughs": []}
    (saved.path / "practise.json").write_text(json.dumps(legacy))
    assert load_pretrained(saved.path).config.num_layers == 3
    legacy["zero_branches"] = {"transformer.h.0.attn": {"kind": "tuple", "length": 2}}
    (saved.path / "practise.json").write_text(json.dumps(legacy))
    with pytest.raises(UntrustedFile, match="earlier practise with dropped sub-layers"):
        load_pretrained(saved.path)
