"""Checks on the reference side of engine/tests/tokenizer_parity.rs.

The Rust test trusts two things this file verifies with transformers alone:
that the HF folder the fixture script saves is a faithful copy of the GGUF
tokenizer (same ids, decodes and chat renders when transformers loads it),
and that the transformers GGUF quirks we correct for are still there (if a
new transformers fixes them, the fixture notes must change).

Run: .venv/bin/python -m pytest tests/python/test_tokenizer_parity.py
"""
import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fixtures" / "tokenizer_parity.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("tokenizer_parity_fixture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    script = _load_script()
    out = tmp_path_factory.mktemp("generated")
    path = script.main(out)
    return script, out, json.loads(path.read_text())


def test_saved_hf_folder_reproduces_the_gguf_tokenizer(generated):
    _, out, fixture = generated
    tok = AutoTokenizer.from_pretrained(out / "smollm2_tokenizer_hf")
    for case in fixture["encodes"]:
        text = case["text"]
        assert tok(text, add_special_tokens=True)["input_ids"] == case["ids_with_special"], text
        assert tok(text, add_special_tokens=False)["input_ids"] == case["ids_without_special"], text
        ids = case["ids_with_special"]
        assert tok.decode(ids, skip_special_tokens=False) == case["decode"], text
        assert tok.decode(ids, skip_special_tokens=True) == case["decode_skip_special"], text
    for case in fixture["chats"]:
        rendered = tok.apply_chat_template(
            case["messages"], tokenize=False, add_generation_prompt=case["add_generation_prompt"])
        assert rendered == case["rendered"]


def test_fixture_follows_the_gguf_file_not_transformers_quirks(generated):
    _, _, fixture = generated
    quirks = fixture["transformers_gguf_quirks"]
    # transformers' GGUF loader: eos_token is the BOS string, BOS is added.
    assert quirks["eos_token"] == quirks["bos_token"] == "<|im_start|>"
    assert quirks["add_bos_token"] is True
    # The file (and the fixture): BOS <|im_start|> not added, EOS <|im_end|>.
    assert (fixture["bos_token_id"], fixture["eos_token_id"]) == (1, 2)
    assert fixture["eos_token"] == "<|im_end|>"
    for case in fixture["encodes"]:
        assert case["ids_with_special"] == case["ids_without_special"], case["text"]


def test_text_set_covers_what_the_brief_asks(generated):
    script, _, _ = generated
    texts = "".join(script.TEXTS)
    for needle in ["日本語", "😀", "\u0301", "مرحبا", "שלום", "\t", "\r\n", "  ", "\n\n\n",
                   "12345", "def ", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]:
        assert needle in texts, needle
