from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from phi3v_data.records import Record, Turn
from phi3v_data.tokens import hd_padded_size, num_image_tokens
from phi3v_train.image_processing_phi3v import CLIP_MEAN, CLIP_STD, HDImageTransform
from phi3v_train.modeling_phi3v import Phi3VForCausalLM
from phi3v_train.processing_phi3v import IGNORE_INDEX, Phi3VProcessor, ProcessorError

SIZES = [(336, 336), (64, 48), (48, 64), (500, 100), (100, 500), (96, 54), (5, 170), (300, 2)]


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path) -> Phi3VProcessor:
    return Phi3VProcessor.from_pretrained(tiny_model_dir)


def record(*turns: Turn, id: str = "r1") -> Record:
    return Record(id=id, source="test", conversations=turns)


@pytest.mark.parametrize("num_crops", range(1, 17))
def test_hd_transform_shapes_and_sizes_follow_the_formula(num_crops: int) -> None:
    transform = HDImageTransform(num_crops)
    for width, height in SIZES:
        pixels, (h, w) = transform(noise_image(width, height))
        assert (h, w) == hd_padded_size(width, height, num_crops)
        rows, cols = h // 336, w // 336
        assert rows * cols <= num_crops
        assert pixels.shape == (num_crops + 1, 3, 336, 336)
        assert pixels[1 + rows * cols :].abs().sum() == 0  # zero crops after the real ones
        assert pixels[rows * cols].abs().sum() > 0


def test_known_token_counts() -> None:
    assert num_image_tokens(500, 500, 4) == 757
    assert num_image_tokens(500, 500, 16) == 2509
    assert num_image_tokens(1000, 500, 16) == 2353


def test_hd_transform_content_matches_the_documented_steps() -> None:
    image = noise_image(700, 500, seed=3)
    pixels, (h, w) = HDImageTransform(4)(image)
    # 700x500 at 4 crops: scale 2 -> 672 x 480, padded to 672 rows, 96 white rows on top.
    assert (h, w) == (672, 672)
    resized = np.asarray(image.resize((672, 480), Image.Resampling.BILINEAR))
    padded = np.full((672, 672, 3), 255, dtype=np.uint8)
    padded[96:576] = resized
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    hd = (torch.from_numpy(padded).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(pixels[1], hd[:, :336, :336])
    torch.testing.assert_close(pixels[2], hd[:, :336, 336:])  # row-major: row 0, col 1
    torch.testing.assert_close(pixels[3], hd[:, 336:, :336])
    torch.testing.assert_close(pixels[4], hd[:, 336:, 336:])
    glb = F.interpolate(hd[None], size=(336, 336), mode="bicubic")[0]
    torch.testing.assert_close(pixels[0], glb)


def test_portrait_images_are_transposed_for_the_resize() -> None:
    image = noise_image(300, 700, seed=4)
    landscape = image.transpose(Image.Transpose.TRANSPOSE)
    portrait_pixels, (h, w) = HDImageTransform(4)(image)
    landscape_pixels, (lh, lw) = HDImageTransform(4)(landscape)
    assert (h, w) == (lw, lh) == (672, 336)
    torch.testing.assert_close(portrait_pixels[1], landscape_pixels[1].transpose(1, 2))


def test_num_crops_is_validated(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="between 1 and 16"):
        Phi3VProcessor.from_pretrained(tiny_model_dir, num_crops=17)
    assert Phi3VProcessor.from_pretrained(tiny_model_dir, num_crops=16).num_crops == 16


def test_encode_expands_tags_and_masks_labels(processor: Phi3VProcessor) -> None:
    sample = record(Turn(user="What is it?", assistant="A cat.", images=("a.png",)))
    image = noise_image(640, 480)
    encoded = processor.encode(sample, [image])
    ids, labels = encoded["input_ids"], encoded["labels"]
    count = num_image_tokens(640, 480, 4)
    assert int((ids == processor.image_token_id).sum()) == count
    assert encoded["pixel_values"].shape == (1, 5, 3, 336, 336)
    assert encoded["image_sizes"].tolist() == [list(hd_padded_size(640, 480, 4))]
    assert ids[0] == processor.bos_token_id
    target = labels[labels != IGNORE_INDEX]
    tokenize = processor.tokenizer
    assert (
        target.tolist()
        == tokenize("A cat.<|end|>\n<|endoftext|>", add_special_tokens=False).input_ids
    )
    assert target[-1] == processor.pad_token_id
    assert processor.end_token_id in target.tolist()
    # Labels are the ids themselves where set.
    assert torch.equal(labels[labels != IGNORE_INDEX], ids[labels != IGNORE_INDEX])
    generation = processor.encode(sample, [image], for_generation=True)
    assert (generation["labels"] == IGNORE_INDEX).all()
    assert processor.decode(generation["input_ids"][-3:], skip_special_tokens=False).endswith(
        "<|assistant|>"
    )


def test_multi_turn_multi_image_labels_cover_every_answer(processor: Phi3VProcessor) -> None:
    sample = record(
        Turn(user="<|image_1|>\n<|image_2|>\nSame?", assistant="No.", images=("a.png", "b.png")),
        Turn(user="Why?", assistant="Colours differ."),
        Turn(user="Third: <|image_3|>", assistant="Yes.", images=("c.png",)),
    )
    images = [noise_image(400, 300), noise_image(300, 900, 1), noise_image(336, 336, 2)]
    encoded = processor.encode(sample, images)
    expected = sum(num_image_tokens(i.width, i.height, 4) for i in images)
    assert int((encoded["input_ids"] == processor.image_token_id).sum()) == expected
    labels = encoded["labels"]
    spans = []
    current: list[int] = []
    for value in labels.tolist():
        if value == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            current.append(value)
    spans.append(current)
    # Every turn is encoded on its own: every answer ends with <|endoftext|>.
    answers = [f"{a}<|end|>\n<|endoftext|>" for a in ("No.", "Colours differ.", "Yes.")]
    tokenize = processor.tokenizer
    assert spans == [tokenize(text, add_special_tokens=False).input_ids for text in answers]


def test_bad_tags_and_image_counts_are_errors(processor: Phi3VProcessor) -> None:
    sample = record(Turn(user="<|image_2|> what?", assistant="x", images=("a.png",)), id="bad")
    with pytest.raises(ProcessorError, match=r"'bad'.*image tags \[2\] must be exactly \[1\]"):
        processor.encode(sample, [noise_image(50, 50)])
    good = record(Turn(user="what?", assistant="x", images=("a.png",)))
    with pytest.raises(ProcessorError, match="1 image paths but 0 images"):
        processor.encode(good, [])


def test_prompt_equals_the_checkpoint_chat_template(real_assets: Path) -> None:
    processor = Phi3VProcessor.from_pretrained(real_assets)
    assert processor.image_token_id == 32044
    assert processor.stop_token_ids == [32007, 32000]
    sample = record(Turn(user="Describe it.", assistant="A dog.", images=("a.png",)))
    rendered = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": "<|image_1|>\nDescribe it."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    # The same text; `<s>` marks where the tokenizer adds BOS (prompt start, after images).
    assert processor.prompt_text(sample, for_generation=True) == "<s>" + rendered.replace(
        "<|image_1|>", "<|image_1|><s>"
    )


# Hand-written from the official processor's rule (BOS before every text chunk) and the
# real tokenizer's ids: <s> 1, <|user|> 32010, "\n" after a special token 29871 13,
# "What is shown?" 5618 338 4318 29973, <|end|> 32007, <|assistant|> 32001,
# <|endoftext|> 32000, placeholder 32044.
USER_OPEN = [1, 32010, 29871, 13]
QUESTION_CLOSE = [1, 29871, 13, 5618, 338, 4318, 29973, 32007, 29871, 13, 32001]
TEXT_ONLY = [1, 32010, 29871, 13, 5618, 338, 4318, 29973, 32007, 29871, 13, 32001]


def _placeholders(count: int) -> list[int]:
    return [32044] * count


@pytest.mark.parametrize(
    ("num_crops", "tokens"),
    # 640x480: num_crops 1 -> 1x1 crops, 4 -> 2x2, 16 -> 3x4: (r*c+1)*144 + 1 + (r+1)*12
    [(1, 313), (4, 757), (16, 1921)],
)
def test_single_image_ids_are_the_official_processors(
    real_assets: Path, num_crops: int, tokens: int
) -> None:
    processor = Phi3VProcessor.from_pretrained(real_assets, num_crops=num_crops)
    sample = record(Turn(user="What is shown?", assistant="A cat.", images=("a.png",)))
    encoded = processor.encode(sample, [noise_image(640, 480)], for_generation=True)
    expected = USER_OPEN + _placeholders(tokens) + QUESTION_CLOSE
    assert encoded["input_ids"].tolist() == expected
    assert len(expected) == {1: 328, 4: 772, 16: 1936}[num_crops]


def test_adjacent_images_and_eight_frames_have_bos_between_runs(real_assets: Path) -> None:
    processor = Phi3VProcessor.from_pretrained(real_assets, num_crops=16)
    two = record(Turn(user="What is shown?", assistant="x", images=("a.png", "b.png")))
    squares = [noise_image(336, 336, seed) for seed in range(8)]  # 2509 tokens each at 16
    expected = USER_OPEN + _placeholders(2509) + [1] + _placeholders(2509) + QUESTION_CLOSE
    assert processor.encode(two, squares[:2], True)["input_ids"].tolist() == expected
    frames = record(
        Turn(user="What is shown?", assistant="x", images=tuple(f"{i}.jpg" for i in range(8)))
    )
    runs = [*_placeholders(2509), 1] * 7 + _placeholders(2509)
    expected = USER_OPEN + runs + QUESTION_CLOSE
    assert processor.encode(frames, squares, True)["input_ids"].tolist() == expected
    # The model card's layout, one tag per line: the chunk between runs is "\n".
    per_line = Phi3VProcessor.from_pretrained(real_assets, num_crops=16, image_layout="per-line")
    expected = USER_OPEN + _placeholders(2509) + [1, 29871, 13] + _placeholders(2509)
    expected += QUESTION_CLOSE
    assert per_line.encode(two, squares[:2], True)["input_ids"].tolist() == expected


def test_text_only_and_multi_turn_ids(real_assets: Path) -> None:
    processor = Phi3VProcessor.from_pretrained(real_assets, num_crops=4)
    text_only = record(Turn(user="What is shown?", assistant="A cat."))
    assert processor.encode(text_only, [], True)["input_ids"].tolist() == TEXT_ONLY
    sample = record(
        Turn(user="What is shown?", assistant="Nothing."),
        Turn(user="What is shown?", assistant="A cat.", images=("a.png",)),
    )
    encoded = processor.encode(sample, [noise_image(640, 480)])
    answer = processor.tokenizer("Nothing.", add_special_tokens=False).input_ids
    answer_2 = processor.tokenizer("A cat.", add_special_tokens=False).input_ids
    end = [32007, 29871, 13, 32000]  # every answer: <|end|>\n<|endoftext|>
    turn_2 = USER_OPEN + _placeholders(757) + QUESTION_CLOSE
    assert encoded["input_ids"].tolist() == TEXT_ONLY + answer + end + turn_2 + answer_2 + end
    labels = encoded["labels"].tolist()
    targets = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    first = len(TEXT_ONLY)
    second = first + len(answer) + len(end) + len(turn_2)
    assert targets == [*range(first, first + len(answer) + 4), *range(second, len(labels))]


def test_callable_processor_matches_encode_one_prompt_or_a_list(real_assets: Path) -> None:
    processor = Phi3VProcessor.from_pretrained(real_assets, num_crops=4)
    messages = [{"role": "user", "content": "<|image_1|>\nWhat is shown?"}]
    prompt = processor.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    image = noise_image(640, 480)
    out = processor(text=prompt, images=[image], return_tensors="pt")
    sample = record(Turn(user="What is shown?", assistant="A cat.", images=("a.png",)))
    encoded = processor.encode(sample, [image], for_generation=True)
    assert out["input_ids"].tolist() == [encoded["input_ids"].tolist()]
    assert out["attention_mask"].tolist() == [[1] * 772]
    assert torch.equal(out["pixel_values"], encoded["pixel_values"])
    assert out["pixel_values"].shape == (1, 5, 3, 336, 336)
    assert out["image_sizes"].tolist() == [[672, 672]]
    # A list: each prompt takes its own images; padding side selectable.
    text = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is shown?"}], tokenize=False, add_generation_prompt=True
    )
    two = processor(text=[prompt, text], images=[image], padding_side="left")
    assert two["input_ids"].shape == (2, 772) and "labels" not in two
    assert two["input_ids"][1, -12:].tolist() == TEXT_ONLY
    assert two["attention_mask"][1].sum() == 12 and two["attention_mask"][1, 0] == 0
    assert two["pixel_values"].shape == (1, 5, 3, 336, 336)
    assert "pixel_values" not in processor(text=text)
    with pytest.raises(ProcessorError, match="2 images given but the prompts have 1 image tags"):
        processor(text=prompt, images=[image, image])
    with pytest.raises(ProcessorError, match=r"prompt: image tags \[2\] must be exactly \[1\]"):
        processor(text=prompt.replace("image_1", "image_2"), images=[image])


def test_collate_mixed_batch_pads_right_and_left(processor: Phi3VProcessor) -> None:
    samples = [
        processor.encode(record(Turn(user="Hi", assistant="Hello.")), []),
        processor.encode(
            record(Turn(user="Pair?", assistant="Yes.", images=("a", "b"))),
            [noise_image(200, 100), noise_image(100, 200, 1)],
        ),
        processor.encode(
            record(Turn(user="One", assistant="Ok.", images=("c",))), [noise_image(90, 90)]
        ),
    ]
    lengths = [s["input_ids"].shape[0] for s in samples]
    right = processor.collate(samples)
    left = processor.collate(samples, padding_side="left")
    assert right["input_ids"].shape == (3, max(lengths))
    assert right["pixel_values"].shape == (3, 5, 3, 336, 336)
    assert right["image_sizes"].tolist() == [
        list(hd_padded_size(200, 100, 4)),
        list(hd_padded_size(100, 200, 4)),
        list(hd_padded_size(90, 90, 4)),
    ]
    for row, length in enumerate(lengths):
        assert right["attention_mask"][row].tolist() == [1] * length + [0] * (max(lengths) - length)
        assert left["attention_mask"][row].tolist() == [0] * (max(lengths) - length) + [1] * length
        assert torch.equal(right["input_ids"][row, :length], samples[row]["input_ids"])
        assert torch.equal(
            left["input_ids"][row, max(lengths) - length :], samples[row]["input_ids"]
        )
        assert (right["labels"][row, length:] == IGNORE_INDEX).all()
        assert (right["input_ids"][row, length:] == processor.pad_token_id).all()
    text_only = processor.collate(samples[:1])
    assert text_only["pixel_values"] is None and text_only["image_sizes"] is None


def test_mixed_batch_runs_through_the_model_and_left_padding_generates(
    processor: Phi3VProcessor, tiny_model_dir: Path
) -> None:
    model = Phi3VForCausalLM.from_pretrained(tiny_model_dir)
    samples = [
        record(Turn(user="Hi", assistant="Hello.")),
        record(Turn(user="Pair?", assistant="Yes.", images=("a", "b"))),
        record(Turn(user="One", assistant="Ok.", images=("c",))),
    ]
    images = [[], [noise_image(200, 100), noise_image(100, 200, 1)], [noise_image(90, 90)]]
    batch = processor.collate(
        [processor.encode(r, i) for r, i in zip(samples, images, strict=True)]
    )
    out = model(**batch)
    assert torch.isfinite(out.loss)
    prompts = processor.collate(
        [processor.encode(r, i, for_generation=True) for r, i in zip(samples, images, strict=True)],
        padding_side="left",
    )
    prompts.pop("labels")
    generated = model.generate(**prompts, max_new_tokens=3, do_sample=False)
    # Each row alone gives the same continuation as in the left-padded batch.
    single = processor.encode(samples[1], images[1], for_generation=True)
    alone = model.generate(
        single["input_ids"][None],
        pixel_values=single["pixel_values"],
        image_sizes=single["image_sizes"],
        max_new_tokens=3,
        do_sample=False,
    )
    width = prompts["input_ids"].shape[1]
    assert generated[1, width:].tolist()[: alone.shape[1] - single["input_ids"].shape[0]] == (
        alone[0, single["input_ids"].shape[0] :].tolist()
    )
    assert isinstance(processor.batch_decode(generated[:, width:])[0], str)


def test_save_pretrained_round_trip(processor: Phi3VProcessor, tmp_path: Path) -> None:
    processor16 = Phi3VProcessor(processor.tokenizer, num_crops=16)
    processor16.save_pretrained(tmp_path)
    again = Phi3VProcessor.from_pretrained(tmp_path)
    assert again.num_crops == 16
    assert again.image_token_id == processor.image_token_id
    sample = record(Turn(user="Hi there", assistant="Yes."))
    assert torch.equal(
        again.encode(sample, [])["input_ids"], processor.encode(sample, [])["input_ids"]
    )


@pytest.mark.parametrize("image_layout", ["seed", "per-line"])
def test_validators_token_budget_is_the_encoded_length(
    real_assets: Path, tmp_path: Path, image_layout: str
) -> None:
    # One layout for everyone: `phi3v validate` counts exactly what training encodes.
    from phi3v_data.validate import ValidateOptions, validate_paths

    sizes = {"a.png": (640, 480), "b.png": (300, 900), "c.png": (336, 336)}
    for name, (width, height) in sizes.items():
        (tmp_path / "images").mkdir(exist_ok=True)
        noise_image(width, height).save(tmp_path / "images" / name)
    records = [
        record(Turn("Same?", "No.", ("a.png", "b.png")), Turn("Why?", "Colours."), id="r1"),
        record(Turn("Hi", "Hello."), Turn("And this <|image_1|>?", "A cat.", ("c.png",)), id="r2"),
        record(Turn("Plain text only, é ✓.", "Yes."), id="r3"),
    ]
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(r.to_json_line() for r in records))
    options = ValidateOptions(
        tokenizer=real_assets, num_crops=16, workers=1, image_layout=image_layout
    )
    counted = list(validate_paths([data], options).stats.token_lengths)
    processor = Phi3VProcessor.from_pretrained(real_assets, num_crops=16, image_layout=image_layout)
    images = {name: Image.open(tmp_path / "images" / name) for name in sizes}
    encoded = [
        processor.encode(r, [images[n] for n in r.images])["input_ids"].shape[0] for r in records
    ]
    assert counted == encoded
