"""A Hugging Face folder never runs its own code: ``auto_map`` (custom code) is refused on
every load path, even when something answers transformers' "run custom code?" prompt."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

PAYLOAD = '''
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import BertConfig, BertModel

class EvilConfig(BertConfig):
    model_type = "evil"

class EvilModel(BertModel):
    config_class = EvilConfig
'''


def evil_folder(tmp_path, where: str):
    """A tiny BERT folder whose config or tokenizer config maps to a Python file that leaves a marker."""
    folder, marker = tmp_path / "evil", tmp_path / "marker.txt"
    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    transformers.BertModel(transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    transformers.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    (folder / "evil.py").write_text(PAYLOAD.format(marker=str(marker)))
    name = {"config": "config.json", "tokenizer": "tokenizer_config.json"}[where]
    data = json.loads((folder / name).read_text())
    data["auto_map"] = ({"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"} if where == "config"
                        else {"AutoTokenizer": ["evil.EvilModel", None]})
    (folder / name).write_text(json.dumps(data))
    return folder, marker


@pytest.mark.parametrize("where", ["config", "tokenizer"])
def test_remote_code_is_refused_even_when_stdin_answers_yes(tmp_path, where):
    folder, marker = evil_folder(tmp_path, where)
    run = subprocess.run([sys.executable, "-m", "practise", "blocks", "--model", f"hf:{folder}"],
                         input="y\n" * 20, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert not marker.exists()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "custom code" in lines[0] and "auto_map" in lines[0]
    assert "trust_remote_code=True" not in run.stderr


@pytest.mark.parametrize("where", ["config", "tokenizer"])
def test_every_library_load_path_refuses_remote_code(tmp_path, where):
    from practise.errors import UntrustedFile
    from practise.text import load_hf
    from practise.text.model import model_class
    from practise.text.saving import load_pretrained

    folder, marker = evil_folder(tmp_path, where)
    for load in (lambda: load_hf(f"hf:{folder}"), lambda: model_class(folder), lambda: load_pretrained(folder)):
        with pytest.raises(UntrustedFile, match="custom code"):
            load()
    assert not marker.exists()
