"""GGUF files as input (`hf:<file.gguf | folder | package>`): dequantised by transformers to a
stock float model, compressed and saved like any Hugging Face model; a clear error without the
`llm` extra."""
import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
pytest.importorskip("accelerate")

from practise.errors import UsageError  # noqa: E402
from practise.text import load_hf  # noqa: E402
from practise.text.gguf import find_gguf  # noqa: E402

V, D, F, LAYERS, HEADS, KV_HEADS = 64, 32, 64, 3, 4, 2


def write_tiny_llama_gguf(path):
    """A 3-layer Llama in GGUF, written offline with the gguf package's writer (float32 tensors)."""
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(LAYERS), w.add_context_length(128), w.add_embedding_length(D), w.add_feed_forward_length(F)
    w.add_head_count(HEADS), w.add_head_count_kv(KV_HEADS), w.add_rope_dimension_count(D // HEADS)
    w.add_layer_norm_rms_eps(1e-5), w.add_vocab_size(V), w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"▁w{i}" for i in range(V - 3)])
    w.add_token_scores([0.0] * V), w.add_token_types([2, 3, 3] + [1] * (V - 3))
    w.add_bos_token_id(1), w.add_eos_token_id(2), w.add_unk_token_id(0)

    def tensor(name, *shape):
        w.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    tensor("token_embd.weight", V, D), tensor("output_norm.weight", D), tensor("output.weight", V, D)
    kv = D * KV_HEADS // HEADS
    for i in range(LAYERS):
        tensor(f"blk.{i}.attn_norm.weight", D), tensor(f"blk.{i}.ffn_norm.weight", D)
        tensor(f"blk.{i}.attn_q.weight", D, D), tensor(f"blk.{i}.attn_k.weight", kv, D)
        tensor(f"blk.{i}.attn_v.weight", kv, D), tensor(f"blk.{i}.attn_output.weight", D, D)
        tensor(f"blk.{i}.ffn_gate.weight", F, D), tensor(f"blk.{i}.ffn_up.weight", F, D)
        tensor(f"blk.{i}.ffn_down.weight", D, F)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return path


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_a_gguf_file_or_its_folder_loads_as_a_stock_float_model(gguf_file):
    for spec in (f"hf:{gguf_file}", f"hf:{gguf_file.parent}"):
        bundle = load_hf(spec)
        model = bundle.model.model
        assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == LAYERS
        assert getattr(model.config, "quantization_config", None) is None
        assert next(model.parameters()).dtype == torch.float32
        assert bundle.model.practise_arch["gguf"] == "tiny.gguf" and bundle.model.practise_arch["dequantized"]


def test_gguf_specs_that_name_no_single_model_are_one_line_errors(tmp_path, gguf_file):
    (tmp_path / "a.gguf").write_bytes(gguf_file.read_bytes())
    (tmp_path / "b.gguf").write_bytes(gguf_file.read_bytes())
    with pytest.raises(UsageError, match="holds 2 .gguf files"):
        find_gguf(f"hf:{tmp_path}")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="not a .gguf file"):
        find_gguf(f"hf:{tmp_path / 'notes.txt'}")


def test_without_the_llm_extra_the_error_names_it(gguf_file, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(UsageError, match=r'GGUF models need gguf: pip install -e "\.\[llm\]"'):
        load_hf(f"hf:{gguf_file}")


@pytest.mark.slow
def test_compress_a_gguf_model_and_reload_the_folder_with_stock_transformers(gguf_file, tmp_path):
    from practise.cli import main

    data = tmp_path / "lines.txt"
    data.write_text("\n".join(" ".join(f"w{(i * 7 + j) % 60}" for j in range(6)) for i in range(40)) + "\n")
    out = tmp_path / "out"
    assert main(["compress", "--model", f"hf:{gguf_file}", "--data", str(data), "--num-examples", "16",
                 "--num-blocks", "1", "--score-iterations", "2", "--recovery-iterations", "2", "--repeats", "3",
                 "--max-repeats", "6", "--out", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["arch"]["gguf"] == "tiny.gguf" and report["saved"]["form"] == "stock"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out / "model", local_files_only=True)
    assert reloaded.config.num_hidden_layers == LAYERS - 1
    prompt = torch.tensor([[1, 5, 6]])
    assert reloaded.generate(prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0).shape == (1, 6)
