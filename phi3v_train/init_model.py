"""Named model builders: the real Phi-3.5-vision sizes and a tiny model for tests and demos.

`init_model_dir(out, size)` writes a randomly initialised checkpoint directory in the
official layout (config.json, safetensors, tokenizer files with the real special tokens and
chat template, preprocessor_config.json, processor_config.json, special_tokens_map.json,
with the `auto_map` entries and key style of the released files), which every other part
of phi3v loads like a downloaded `microsoft/Phi-3.5-vision-instruct`. Nothing here reads
the network or `/work/shared`: the tiny tokenizer is built offline from a small text sample.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from phi3v_data.jsonl import atomic_write
from phi3v_train.configuration_phi3v import (
    DEFAULT_EMBD_LAYER,
    DEFAULT_IMG_PROCESSOR,
    Phi3VConfig,
)

Size = Literal["tiny", "phi-3.5-vision"]
SIZES: tuple[str, ...] = ("tiny", "phi-3.5-vision")

# The chat template of microsoft/Phi-3.5-vision-instruct (tokenizer_config.json, MIT).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content']"
    " + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] !="
    " 'assistant' %}{{- '<|assistant|>\n' -}}{% endif %}"
)
# The remote-code classes the released files name in their `auto_map` (the official code
# and vLLM load through them when the `.py` files lie beside the config).
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_phi3_v.Phi3VConfig",
    "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM",
}
PROCESSOR_AUTO_MAP = {"AutoProcessor": "processing_phi3_v.Phi3VProcessor"}
IMAGE_PROCESSOR_AUTO_MAP = {
    "AutoImageProcessor": "processing_phi3_v.Phi3VImageProcessor",
    **PROCESSOR_AUTO_MAP,
}
# As in the released tokenizer_config.json / special_tokens_map.json (`<|end|>` twice).
ADDITIONAL_SPECIAL_TOKENS = ["<|system|>", "<|end|>", "<|user|>", "<|end|>"]
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# The LongRoPE factors of the released config (48 = head_dim 96 / 2 each).
SHORT_FACTOR = [1.08, 1.1, 1.1300000000000001, 1.2800000000000002, 1.3100000000000003, 1.4500000000000004, 1.4500000000000004, 1.9500000000000008, 2.030000000000001, 2.4299999999999926, 2.5699999999999896, 2.9499999999999815, 3.729999999999965, 3.869999999999962, 4.189999999999955, 4.43999999999995, 4.6399999999999455, 4.979999999999938, 5.159999999999934, 5.279999999999932, 5.759999999999922, 5.889999999999919, 5.889999999999919, 5.969999999999917, 6.089999999999915, 6.2799999999999105, 6.7699999999999, 6.8899999999998975, 7.109999999999893, 7.129999999999892, 7.179999999999891, 7.289999999999889, 7.339999999999888, 7.559999999999883, 7.619999999999882, 7.69999999999988, 7.879999999999876, 7.879999999999876, 7.879999999999876, 7.939999999999875, 7.949999999999875, 7.979999999999874, 8.19999999999987, 8.439999999999864, 8.469999999999864, 8.589999999999861, 8.809999999999857, 8.999999999999853]  # fmt: skip
LONG_FACTOR = [1.0800000429153442, 1.1100000143051147, 1.1399999856948853, 1.340000033378601, 1.5899999141693115, 1.600000023841858, 1.6200000047683716, 2.620000123977661, 3.2300000190734863, 3.2300000190734863, 4.789999961853027, 7.400000095367432, 7.700000286102295, 9.09000015258789, 12.199999809265137, 17.670000076293945, 24.46000099182129, 28.57000160217285, 30.420001983642578, 30.840002059936523, 32.590003967285156, 32.93000411987305, 42.320003509521484, 44.96000289916992, 50.340003967285156, 50.45000457763672, 57.55000305175781, 57.93000411987305, 58.21000289916992, 60.1400032043457, 62.61000442504883, 62.62000274658203, 62.71000289916992, 63.1400032043457, 63.1400032043457, 63.77000427246094, 63.93000411987305, 63.96000289916992, 63.970001220703125, 64.02999877929688, 64.06999969482422, 64.08000183105469, 64.12000274658203, 64.41000366210938, 64.4800033569336, 64.51000213623047, 64.52999877929688, 64.83999633789062]  # fmt: skip

# Special tokens of the real tokenizer, with its flags: (content, rstrip, special).
SPECIAL_TOKENS = (
    ("<|endoftext|>", False, True),
    ("<|assistant|>", True, True),
    ("<|system|>", False, True),
    ("<|end|>", False, True),
    ("<|user|>", False, True),
    ("<|image|>", True, True),
)
TINY_VOCAB_SIZE = 512  # tokenizer size rounded up, as the real 32045 -> 32064

# A little English for the tiny BPE merges; byte fallback covers everything else.
_TINY_CORPUS = """\
What is shown in the image? Describe the picture. What does the document say?
The person is playing a guitar. Answer with yes or no. The answer is yes. No, it is not.
Which action is shown in the video? How many objects are there? The meme is hateful.
The left image shows two dogs and the right image shows one cat. Is the statement true?
What is the date on the invoice? The total amount is 1234.56 dollars. Thank you.
"""


def _official_flat_config(**overrides: object) -> dict:
    config = {
        "architectures": ["Phi3VForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "embd_layer": dict(DEFAULT_EMBD_LAYER),
        "embd_pdrop": 0.0,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 3072,
        "img_processor": dict(DEFAULT_IMG_PROCESSOR),
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "max_position_embeddings": 131072,
        "model_type": "phi3_v",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "original_max_position_embeddings": 4096,
        "pad_token_id": 32000,
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"long_factor": LONG_FACTOR, "short_factor": SHORT_FACTOR, "type": "su"},
        "rope_theta": 10000.0,
        "sliding_window": 262144,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 32064,
    }
    config.update(overrides)
    return config


def phi35_vision_config() -> Phi3VConfig:
    """The released Phi-3.5-vision-instruct architecture (4.15 B parameters)."""
    return Phi3VConfig.from_official_dict(_official_flat_config())


def tiny_config() -> Phi3VConfig:
    """A ~0.1 M-parameter model with the real structure: 2 decoder layers of width 64, a
    3-layer CLIP of width 32 at 336 px / patch 14 (so the HD transform is the real one),
    and the ids of the tiny tokenizer built by `build_tiny_tokenizer`."""
    ids = tiny_token_ids()
    head_dim = 16
    return Phi3VConfig.from_official_dict(
        _official_flat_config(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=TINY_VOCAB_SIZE,
            max_position_embeddings=16384,
            original_max_position_embeddings=4096,
            sliding_window=16384,
            torch_dtype="float32",
            pad_token_id=ids["<|endoftext|>"],
            rope_scaling={
                "long_factor": LONG_FACTOR[: head_dim // 2],
                "short_factor": SHORT_FACTOR[: head_dim // 2],
                "type": "su",
            },
            img_processor={
                **DEFAULT_IMG_PROCESSOR,
                "image_dim_out": 32,
                "model_name": "phi3v-tiny-clip",
                "vision_config": {
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_hidden_layers": 3,
                    "num_attention_heads": 2,
                },
            },
            image_token_id=ids["<|image|>"],
            end_token_id=ids["<|end|>"],
            endoftext_token_id=ids["<|endoftext|>"],
        )
    )


def build_tiny_tokenizer():
    """A byte-fallback BPE tokenizer shaped like the real one (same normalizer, decoder,
    `<s>` post-processor and special-token flags), with a vocabulary of < 512 tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
    trainer = BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE - len(SPECIAL_TOKENS) - 8,
        special_tokens=["<unk>", "<s>", "</s>", *byte_tokens],
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS.splitlines(), trainer=trainer)
    # The trainer registers the byte tokens as special added tokens, so decoding with
    # skip_special_tokens would drop every byte-fallback piece ("Apply" + <0x45> + ...).
    # They are ordinary vocabulary (as in the real tokenizer): keep their ids, unmark them.
    data = json.loads(tokenizer.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    tokenizer = Tokenizer.from_str(json.dumps(data))
    tokenizer.add_special_tokens(
        [
            AddedToken(content, rstrip=rstrip, lstrip=False, normalized=False, special=special)
            for content, rstrip, special in SPECIAL_TOKENS
        ]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tokenizer


def tiny_token_ids() -> dict[str, int]:
    tokenizer = build_tiny_tokenizer()
    return {content: tokenizer.token_to_id(content) for content, _, _ in SPECIAL_TOKENS}


def _added_tokens(tokenizer) -> list[dict]:
    """The added tokens of a `tokenizers.Tokenizer`, as in its tokenizer.json."""
    return json.loads(tokenizer.to_str())["added_tokens"]


def _token_flags(token: dict) -> dict:
    """An added token in the keys and order transformers writes to its config files."""
    return {
        "content": token["content"],
        "lstrip": token["lstrip"],
        "normalized": token["normalized"],
        "rstrip": token["rstrip"],
        "single_word": token["single_word"],
    }


def tokenizer_config(model_max_length: int, added_tokens: list[dict] | None = None) -> dict:
    """tokenizer_config.json in the released style (sorted keys, `added_tokens_decoder`
    from the tokenizer's added tokens, `auto_map`, `processor_class`)."""
    decoder = {
        str(token["id"]): {**_token_flags(token), "special": token["special"]}
        for token in added_tokens or []
    }
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": list(ADDITIONAL_SPECIAL_TOKENS),
        "auto_map": dict(PROCESSOR_AUTO_MAP),
        "bos_token": "<s>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "legacy": False,
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "padding_side": "right",
        "processor_class": "Phi3VProcessor",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    if not decoder:
        del config["added_tokens_decoder"]
    return config


def special_tokens_map(added_tokens: list[dict]) -> dict:
    """special_tokens_map.json in the released style (token dicts with their flags)."""
    by_content = {token["content"]: token for token in added_tokens}
    return {
        "additional_special_tokens": list(ADDITIONAL_SPECIAL_TOKENS),
        "bos_token": _token_flags(by_content["<s>"]),
        "eos_token": _token_flags(by_content["<|endoftext|>"]),
        "pad_token": _token_flags(by_content["<|endoftext|>"]),
        "unk_token": _token_flags(by_content["<unk>"]),
    }


def preprocessor_config(num_crops: int = 4) -> dict:
    """preprocessor_config.json as released (with `auto_map`), for `num_crops`."""
    return {
        "auto_map": dict(IMAGE_PROCESSOR_AUTO_MAP),
        "do_convert_rgb": True,
        "image_mean": list(IMAGE_MEAN),
        "image_processor_type": "Phi3VImageProcessor",
        "image_std": list(IMAGE_STD),
        "num_crops": num_crops,
        "num_img_tokens": 144,
        "processor_class": "Phi3VProcessor",
    }


def processor_config() -> dict:
    return {"auto_map": dict(PROCESSOR_AUTO_MAP), "processor_class": "Phi3VProcessor"}


def write_json(path: Path, data: dict) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")


def init_model_dir(
    out: Path,
    size: Size = "tiny",
    *,
    seed: int = 0,
    dtype: str = "float32",
    num_crops: int = 4,
) -> Path:
    """Write a randomly initialised checkpoint directory of `size` to `out`.

    Both sizes get the offline tiny tokenizer (real special tokens and chat template, a
    small vocabulary): `phi-3.5-vision` is the real architecture with random weights, for
    benchmarks and throughput runs, not for language.
    """
    import torch

    from phi3v_data.tokens import check_num_crops
    from phi3v_train.modeling_phi3v import build_model

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
    check_num_crops(num_crops)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = tiny_config() if size == "tiny" else phi35_vision_config()
    # The small tokenizer's ids, so that its processor and the model agree.
    ids = tiny_token_ids()
    config.image_token_id = ids["<|image|>"]
    config.end_token_id = ids["<|end|>"]
    config.endoftext_token_id = ids["<|endoftext|>"]
    # config.json names the remote code as the released one does.
    config.passthrough = {"auto_map": dict(CONFIG_AUTO_MAP), **config.passthrough}
    torch.manual_seed(seed)
    model = build_model(config, dtype=getattr(torch, dtype))
    model.save_pretrained(out)
    tokenizer = build_tiny_tokenizer()
    tokenizer.save(str(out / "tokenizer.json"))
    added = _added_tokens(tokenizer)
    write_json(out / "tokenizer_config.json", tokenizer_config(131072, added))
    write_json(out / "special_tokens_map.json", special_tokens_map(added))
    write_json(out / "preprocessor_config.json", preprocessor_config(num_crops))
    write_json(out / "processor_config.json", processor_config())
    return out
