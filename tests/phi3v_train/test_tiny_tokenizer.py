"""The tiny test tokenizer round-trips any text, as the real one does."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phi3v_train.init_model import SPECIAL_TOKENS
from phi3v_train.processing_phi3v import Phi3VProcessor


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return Phi3VProcessor.from_pretrained(tiny_model_dir).tokenizer


SPECIALS = [content for content, _, _ in SPECIAL_TOKENS] + ["<s>", "</s>", "<unk>"]


@settings(max_examples=300, deadline=None)
# U+2581 is SentencePiece's word marker: the real tokenizer also decodes it as a space;
# lone surrogates (Cs) are not encodable text.
@given(
    text=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"), max_size=40
    )
)
def test_decode_of_encode_is_the_text(tokenizer, text: str) -> None:
    if any(special in text for special in SPECIALS):
        return  # control tokens are not text
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("word", ["ApplyEyeMakeup", "HandstandPushups", "square", "北京 ✓"])
def test_byte_fallback_pieces_survive_skip_special_tokens(tokenizer, word: str) -> None:
    ids = tokenizer(word, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == word
