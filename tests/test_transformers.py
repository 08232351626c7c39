"""Hugging Face transformers models (tiny random configurations, no download): discovery,
dropping with keyword arguments, KV-cache generation, save_pretrained and reloading."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from practise.blocks import find_blocks  # noqa: E402
from practise.surgery import drop_blocks  # noqa: E402
from practise.text import SequenceModel  # noqa: E402
from practise.text.saving import load_pretrained, remove_dropped_layers_, save_pretrained  # noqa: E402

T = transformers
SMALL = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, vocab_size=120)


def small(config_class, **extra):
    return config_class(**{**SMALL, **extra})


# the families, and others it does not list (the rule is general, not a table)
TEXT_MODELS = {
    "bert": lambda: T.BertModel(small(T.BertConfig)),
    "roberta": lambda: T.RobertaModel(small(T.RobertaConfig)),
    "distilbert": lambda: T.DistilBertModel(T.DistilBertConfig(vocab_size=120, dim=32, n_layers=4, n_heads=2,
                                                               hidden_dim=64)),
    "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(n_embd=32, n_layer=4, n_head=2, vocab_size=120)),
    "llama": lambda: T.LlamaForCausalLM(small(T.LlamaConfig, num_key_value_heads=1)),
    "qwen2": lambda: T.Qwen2ForCausalLM(small(T.Qwen2Config, num_key_value_heads=1)),
    "mistral": lambda: T.MistralForCausalLM(small(T.MistralConfig, num_key_value_heads=1)),
    "phi": lambda: T.PhiForCausalLM(small(T.PhiConfig)),
    "gemma2": lambda: T.Gemma2ForCausalLM(small(T.Gemma2Config, num_key_value_heads=1, head_dim=16, sliding_window=4)),
}
CAUSAL = ["gpt2", "llama", "qwen2", "mistral", "phi", "gemma2"]
IMAGE_MODELS = {
    "vit": lambda: T.ViTForImageClassification(small(T.ViTConfig, image_size=16, patch_size=4)),
    "dinov2": lambda: T.Dinov2Model(small(T.Dinov2Config, image_size=16, patch_size=4)),
    "clip-vision": lambda: T.CLIPVisionModel(small(T.CLIPVisionConfig, image_size=16, patch_size=4)),
    "convnextv2": lambda: T.ConvNextV2Model(T.ConvNextV2Config(num_stages=2, hidden_sizes=[8, 16], depths=[2, 2])),
}


def wrapped(name):
    torch.manual_seed(0)
    return SequenceModel(TEXT_MODELS[name]().eval())


def tokens(model, length=7, batch=1, seed=0):
    return model.practise_example_input(batch, (2, length), torch.Generator().manual_seed(seed))


def primary(output):
    return output.logits if hasattr(output, "logits") else output[0]


@pytest.mark.parametrize("name", list(TEXT_MODELS))
def test_every_layer_found_once_and_each_drop_runs(name):
    model = wrapped(name)
    x = tokens(model)
    blocks = find_blocks(model, x)
    assert len(blocks) == 4 and all(b.params > 1000 for b in blocks)  # layers, not activations
    assert len({b.kind for b in blocks}) == 1
    with torch.no_grad():
        reference = primary(model(x))
        for block in blocks:  # the stand-in takes the caller's masks, caches and position embeddings
            out = primary(drop_blocks(model, [block.name])(x))
            assert out.shape == reference.shape and not torch.allclose(out, reference)


def test_gpt2_tanh_gelu_is_not_a_block_and_sublayers_are_attention_and_mlp():
    model = wrapped("gpt2")
    x = tokens(model)
    assert not any("act" in b.name for b in find_blocks(model, x, granularity="sublayer"))
    sub = [b.name.rsplit(".", 1)[-1] for b in find_blocks(model, x, granularity="sublayer")]
    assert sub == ["attn", "mlp"] * 4


@pytest.mark.parametrize("name", list(IMAGE_MODELS))
def test_vision_transformers_and_convnexts_found_in_their_stages(name):
    torch.manual_seed(0)
    model = IMAGE_MODELS[name]().eval()
    x = torch.randn(1, 3, 16, 16) if name != "convnextv2" else torch.randn(1, 3, 32, 32)
    blocks = find_blocks(model, x)
    assert len(blocks) == 4 and not any(b.name.endswith("grn") for b in blocks)
    with torch.no_grad():
        assert primary(drop_blocks(model, [blocks[1].name])(x)).shape == primary(model(x)).shape


@pytest.mark.parametrize("name", CAUSAL)
@pytest.mark.parametrize("granularity", ["layer", "sublayer"])
def test_generation_with_kv_cache_after_dropping(name, granularity):
    model = wrapped(name)
    blocks = [b.name for b in find_blocks(model, tokens(model), granularity=granularity)]
    student = drop_blocks(model, [blocks[0], blocks[3]]).model
    remove_dropped_layers_(student)
    for seed in range(12):  # greedy decoding: the cache must not change a single token
        prompt = torch.randint(3, 120, (1, 3 + seed % 5), generator=torch.Generator().manual_seed(seed))
        cached = student.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
        uncached = student.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False, pad_token_id=0)
        assert torch.equal(cached, uncached), (seed, cached, uncached)


@pytest.mark.parametrize("name", ["bert", "llama", "gpt2"])
def test_whole_layer_drops_save_as_a_smaller_stock_model(name, tmp_path):
    model = wrapped(name)
    x = tokens(model)
    student = drop_blocks(model, [b.name for b in find_blocks(model, x)[1:3]])
    save_pretrained(student.model, None, tmp_path / "out")
    auto = T.AutoModelForCausalLM if name in CAUSAL else T.AutoModel
    reloaded = auto.from_pretrained(tmp_path / "out", local_files_only=True).eval()
    assert reloaded.config.num_hidden_layers == 2
    assert sum(p.numel() for p in reloaded.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert torch.allclose(primary(SequenceModel(reloaded)(x)), primary(student(x)), atol=1e-5)


def test_sublayer_drops_reload_with_load_pretrained(tmp_path):
    model = wrapped("llama")
    x = tokens(model)
    sub = [b.name for b in find_blocks(model, x, granularity="sublayer")]
    student = drop_blocks(model, [sub[0], sub[5]])
    save_pretrained(student.model, None, tmp_path / "out")
    reloaded = load_pretrained(tmp_path / "out")
    with torch.no_grad():
        assert torch.allclose(primary(SequenceModel(reloaded)(x)), primary(student(x)), atol=1e-5)


def test_decode_latency_per_token_of_teacher_and_dropped_model():
    from practise.text.decode import decode_ms_per_token, is_causal_lm

    model = wrapped("llama")
    student = drop_blocks(model, [b.name for b in find_blocks(model, tokens(model))[:2]]).model
    remove_dropped_layers_(student)
    assert is_causal_lm(model.model) and not is_causal_lm(wrapped("bert").model)
    times = decode_ms_per_token({"teacher": model.model, "compressed": student}, prompt_length=4, new_tokens=4,
                                repeats=2)
    assert set(times) == {"teacher", "compressed"} and all(t > 0 for t in times.values())


def test_kd_on_token_logits_leaves_padding_out_and_latency_runs_on_decoders():
    from practise.latency import LatencyConfig, block_latency_reductions
    from practise.recovery import RECOVERY_METHODS, RecoveryConfig

    model = wrapped("qwen2")
    x = tokens(model, length=6, batch=2)
    x[1, 1, 4:] = 0  # the second example is two tokens shorter
    student = drop_blocks(model, [find_blocks(model, x)[1].name])
    kd = RECOVERY_METHODS["kd"]
    loss = kd.losses(student, model, x, None, None, RecoveryConfig(method="kd"))["loss"]
    changed = x.clone()
    changed[1, 0, 4:] = 7  # other ids at the padded positions: their logits change, the loss must not
    with torch.no_grad():
        again = kd.losses(student, model, changed, None, None, RecoveryConfig(method="kd"))["loss"]
        assert not torch.allclose(student(changed).logits[1, 4:], student(x).logits[1, 4:])
    assert loss > 0 and torch.allclose(again, loss, atol=1e-6)
    r_b, details, settings = block_latency_reductions(model, (2, 8), [b.name for b in find_blocks(model, x)],
                                                      LatencyConfig(repeats=3, max_repeats=6))
    assert len(r_b) == 4 and settings.input_shape[1:] == [2, 8]
