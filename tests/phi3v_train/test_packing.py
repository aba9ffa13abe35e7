"""`--packing` and `--group-by-length`: a packed micro-batch is the padded one without
the padding, so training takes the same steps (CPU fp32, tiny model).

Tolerances: losses relative 1e-5 (the packed row changes only the shapes of the matrix
products, so their rounding). Final weights: relative 1e-5 over all weights together,
and absolute 1e-5 per entry. Per entry a relative bound does not hold: Adam divides each
gradient by its own running scale, so an entry whose true gradient is (nearly) zero, such
as the CLIP key biases (softmax ignores a shift of all keys), moves by about lr x 1e-4
in a direction set by rounding noise in either run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from train_fixtures import (
    FAST_CLI_ARGS,
    cli_command,
    cli_env,
    fast_config,
    losses,
    write_colour_dataset,
)

from phi3v_data.records import Record, Turn
from phi3v_data.tokens import num_image_tokens
from phi3v_train.collator import TrainCollator
from phi3v_train.data import Sample, TrainDataset, load_samples, split_files
from phi3v_train.modeling_phi3v import Phi3VForCausalLM
from phi3v_train.packing import (
    LengthGroupedSampler,
    length_grouped_indices,
    pack,
    packing_report,
    padding_stats,
    sample_lengths,
)
from phi3v_train.processing_phi3v import Phi3VProcessor
from phi3v_train.run_report import read_train_log
from phi3v_train.train import run_training

STEPS = 4


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours"), train=8, val=4)


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path) -> Phi3VProcessor:
    return Phi3VProcessor.from_pretrained(tiny_model_dir, num_crops=1)


@pytest.fixture(scope="module")
def encoded(colour_dir: Path, processor: Phi3VProcessor) -> list[dict]:
    """Four training samples: three with an image (about 360 tokens), one text-only (26)."""
    dataset = TrainDataset(load_samples(split_files(colour_dir, "train")), processor)
    return [dataset[i] for i in range(4)]


def _num_items(labels: torch.Tensor) -> int:
    """The Trainer's count of target tokens for a causal LM: `labels[..., 1:] != -100`."""
    return int((labels[..., 1:] != -100).sum())


# -- the packed layout ------------------------------------------------------------------


def test_pack_concatenates_samples_with_restarting_positions(encoded: list[dict]) -> None:
    packed = TrainCollator(None, packing=True)(encoded)
    sizes = [s["input_ids"].shape[0] for s in encoded]
    assert set(packed) == {"input_ids", "labels", "position_ids", "pixel_values", "image_sizes"}
    assert packed["input_ids"].shape == (1, sum(sizes))
    assert torch.equal(packed["input_ids"][0], torch.cat([s["input_ids"] for s in encoded]))
    expected_positions = torch.cat([torch.arange(n) for n in sizes])
    assert torch.equal(packed["position_ids"][0], expected_positions)
    starts = torch.tensor([0, *sizes[:-1]]).cumsum(0)
    assert (packed["labels"][0, starts] == -100).all()
    # Images in sample order: the order of their placeholders in the row.
    with_images = [s for s in encoded if s["pixel_values"] is not None]
    assert torch.equal(packed["pixel_values"], torch.cat([s["pixel_values"] for s in with_images]))
    assert torch.equal(packed["image_sizes"], torch.cat([s["image_sizes"] for s in with_images]))


def test_target_tokens_are_the_same_packed_and_padded(
    encoded: list[dict], processor: Phi3VProcessor
) -> None:
    padded = processor.collate(encoded)
    packed = pack(encoded)
    assert _num_items(packed["labels"]) == _num_items(padded["labels"]) > 0
    # A sample whose first label were a target: in a padded row the shift drops it; packed,
    # it would be predicted from the previous sample's last token, so it is not a target.
    odd = dict(encoded[1], labels=encoded[1]["input_ids"].clone())
    batch = [encoded[0], odd]
    assert _num_items(pack(batch)["labels"]) == _num_items(processor.collate(batch)["labels"])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_and_backward_equal_the_padded_batch(
    tiny_model_dir: Path, encoded: list[dict], processor: Phi3VProcessor, attn: str
) -> None:
    model = Phi3VForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn)
    model.train()
    results = {}
    for name, batch in (("padded", processor.collate(encoded)), ("packed", pack(encoded))):
        inputs = {key: value for key, value in batch.items() if value is not None}
        model.zero_grad()
        out = model(**inputs, num_items_in_batch=_num_items(inputs["labels"]), use_cache=False)
        out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[name] = (out.loss.detach(), out.logits.detach(), grads)
    (padded_loss, padded_logits, padded_grads) = results["padded"]
    (packed_loss, packed_logits, packed_grads) = results["packed"]
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-6, atol=0)
    start = 0
    for row, sample in enumerate(encoded):  # every real position of every sample
        size = sample["input_ids"].shape[0]
        torch.testing.assert_close(
            packed_logits[0, start : start + size], padded_logits[row, :size], rtol=1e-5, atol=1e-5
        )
        start += size
    assert ((packed_grads - padded_grads).norm() / padded_grads.norm()).item() < 1e-5


def test_attention_never_crosses_samples(tiny_model_dir: Path, encoded: list[dict]) -> None:
    """Changing the first sample changes nothing in the second's logits."""
    model = Phi3VForCausalLM.from_pretrained(tiny_model_dir).eval()
    first, second = encoded[3], encoded[0]  # text-only, then an image sample
    other = dict(first, input_ids=first["input_ids"].flip(0))
    with torch.no_grad():
        logits = [
            model(
                **{k: v for k, v in pack([a, second]).items() if v is not None}, use_cache=False
            ).logits[0, a["input_ids"].shape[0] :]
            for a in (first, other)
        ]
        alone = model(
            **{k: v for k, v in pack([second]).items() if v is not None}, use_cache=False
        ).logits[0]
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[0], alone, rtol=1e-5, atol=1e-5)


def test_packed_positions_give_flash_attention_the_sample_boundaries(encoded: list[dict]) -> None:
    """Under flash_attention_2 the varlen kernel takes cu_seqlens from the position ids."""
    from transformers.modeling_flash_attention_utils import (
        _is_packed_sequence,
        prepare_fa_kwargs_from_position_ids,
    )

    position_ids = pack(encoded)["position_ids"]
    assert _is_packed_sequence(position_ids, batch_size=1)
    (cu_seqlens, _), (longest, _) = prepare_fa_kwargs_from_position_ids(position_ids)
    sizes = [s["input_ids"].shape[0] for s in encoded]
    assert cu_seqlens.tolist() == [0, *torch.tensor(sizes).cumsum(0).tolist()]
    assert int(longest) == max(sizes)


# -- lengths and the length-grouped order -----------------------------------------------


def test_sample_lengths_are_the_encoded_lengths(
    colour_dir: Path, processor: Phi3VProcessor
) -> None:
    samples = load_samples(split_files(colour_dir, "train"))
    dataset = TrainDataset(samples, processor)
    assert sample_lengths(samples, processor) == [
        dataset[i]["input_ids"].shape[0] for i in range(len(samples))
    ]
    assert max(sample_lengths(samples, processor, max_length=100)) == 100
    # An image that cannot be read adds nothing (the sample is skipped when fetched).
    good = samples[0].record.images[0]
    root = samples[0].image_root
    two = Record("two", "x", (Turn("Q", "A", (good, good)),))
    broken = Record("broken", "x", (Turn("Q", "A", (good, "missing.png")),))
    lengths = sample_lengths([Sample(two, root, "a"), Sample(broken, root, "b")], processor)
    image_tokens = num_image_tokens(*Image.open(root / good).size, processor.num_crops)
    assert lengths[1] == lengths[0] - image_tokens


def test_length_grouped_order_is_a_pure_function_of_seed_and_epoch() -> None:
    lengths = [((i * 37) % 101) + 1 for i in range(203)]
    order = length_grouped_indices(lengths, micro_batch=4, seed=3, epoch=0)
    assert sorted(order) == list(range(203))
    assert order == length_grouped_indices(lengths, 4, 3, 0)
    assert order != length_grouped_indices(lengths, 4, 3, 1)
    assert order != length_grouped_indices(lengths, 4, 4, 0)
    # The short micro-batch (203 = 50 x 4 + 3) stays last, where the DataLoader cuts it.
    assert len(order[200:]) == 3
    sampler = LengthGroupedSampler(lengths, 4, seed=3)
    sampler.set_epoch(1)
    assert list(sampler) == length_grouped_indices(lengths, 4, 3, 1)
    assert len(sampler) == 203
    # Grouping cuts the padding far below a random order's.
    grouped = padding_stats(lengths, order, 4, 2)
    shuffled = padding_stats(lengths, torch.randperm(203).tolist(), 4, 2)
    assert grouped.real == shuffled.real == sum(lengths)
    assert grouped.padding_fraction < 0.1 < shuffled.padding_fraction


def test_padding_stats_by_hand() -> None:
    stats = padding_stats(
        [10, 30, 20, 20, 5], [0, 1, 2, 3, 4], micro_batch=2, micro_batches_per_step=2
    )
    # micro-batches [10, 30] -> 60 positions, [20, 20] -> 40, [5] -> 5; 2 steps
    assert (stats.real, stats.padded, stats.steps) == (85, 105, 2)
    assert stats.padding_fraction == pytest.approx(20 / 105)
    assert stats.tokens_per_step == 42.5
    report = packing_report([10, 30, 20, 20, 5], 2, 2, seed=0, group_by_length=True)
    assert report["packed_padding_fraction"] == 0.0
    assert report["padding_fraction"] == report["length_grouped_padding_fraction"]
    assert report["tokens_per_step"] == 42.5


# -- training: the same steps packed and padded -----------------------------------------


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, colour_dir: Path, tmp_path_factory):
    """Padded one-process runs, by (mode, group_by_length): the run folder."""
    runs: dict[tuple[str, bool], Path] = {}

    def run(mode: str, group_by_length: bool = False) -> Path:
        key = (mode, group_by_length)
        if key not in runs:
            out = tmp_path_factory.mktemp(f"padded-{mode}-{group_by_length}") / "run"
            config = fast_config(
                tiny_model_dir,
                colour_dir,
                out,
                mode=mode,
                max_steps=STEPS,
                group_by_length=group_by_length,
                eval_steps=2,
                eval_split="val",
                eval_max_samples=2,
                max_new_tokens=2,
            )
            run_training(config)
            runs[key] = out
        return runs[key]

    return run


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    name = (
        "model.safetensors"
        if (out / "model.safetensors").is_file()
        else "adapter_model.safetensors"
    )
    return load_file(out / name)


def assert_same_training(run: Path, reference: Path) -> None:
    log, expected = read_train_log(run), read_train_log(reference)
    assert len(losses(expected)) == STEPS
    assert losses(log) == pytest.approx(losses(expected), rel=1e-5)
    evals = [e["eval_loss"] for e in log if "eval_loss" in e]
    assert evals == pytest.approx([e["eval_loss"] for e in expected if "eval_loss" in e], rel=1e-5)
    weights, expected_weights = _final_weights(run), _final_weights(reference)
    assert set(weights) == set(expected_weights)
    flat = torch.cat([weights[k].flatten() for k in sorted(weights)])
    flat_expected = torch.cat([expected_weights[k].flatten() for k in sorted(weights)])
    assert ((flat - flat_expected).norm() / flat_expected.norm()).item() < 1e-5
    assert (flat - flat_expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_packed_training_takes_the_same_steps(
    tiny_model_dir: Path, colour_dir: Path, reference, tmp_path: Path, mode: str
) -> None:
    """Global batch 4 = 2 per device x 2 accumulation steps, with evaluation (packed too)."""
    out = tmp_path / "run"
    config = fast_config(
        tiny_model_dir,
        colour_dir,
        out,
        mode=mode,
        max_steps=STEPS,
        packing=True,
        eval_steps=2,
        eval_split="val",
        eval_max_samples=2,
        max_new_tokens=2,
    )
    run_training(config)
    assert_same_training(out, reference(mode))
    summary = json.loads((out / "train_summary.json").read_text())["batching"]
    assert summary["packing"] is True and summary["packed_padding_fraction"] == 0.0
    assert 0.0 < summary["padding_fraction"] < 1.0
    assert summary["tokens_per_step"] > 0


def test_group_by_length_packed_and_padded_take_the_same_steps(
    tiny_model_dir: Path, colour_dir: Path, reference, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = fast_config(
        tiny_model_dir,
        colour_dir,
        out,
        max_steps=STEPS,
        packing=True,
        group_by_length=True,
        eval_steps=2,
        eval_split="val",
        eval_max_samples=2,
        max_new_tokens=2,
    )
    run_training(config)
    grouped = reference("full", group_by_length=True)
    assert_same_training(out, grouped)
    # A different order than the random one: other losses.
    assert losses(read_train_log(grouped)) != losses(read_train_log(reference("full")))
    summary = json.loads((grouped / "train_summary.json").read_text())["batching"]
    assert summary["group_by_length"] is True
    assert summary["padding_fraction"] == summary["length_grouped_padding_fraction"]
    assert summary["length_grouped_padding_fraction"] < summary["random_order_padding_fraction"]


# -- kill -9 and --resume auto ----------------------------------------------------------

RESUME_STEPS = 8


def test_packed_length_grouped_run_resumes_after_kill_with_the_same_losses(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """12 samples, 3 steps an epoch: the kill and the resume fall in later epochs too,
    whose length-grouped order the resumed run must draw again."""
    data = write_colour_dataset(tmp_path / "data", train=12, val=2)
    settings = {"max_steps": RESUME_STEPS, "packing": True, "group_by_length": True}
    reference = run_training(fast_config(tiny_model_dir, data, tmp_path / "ref", **settings))
    expected = losses(reference.log)
    assert len(expected) == RESUME_STEPS

    out = tmp_path / "killed"
    args = ("train", "-d", data, "-m", tiny_model_dir, "-o", out, *FAST_CLI_ARGS)
    command = cli_command(*args, "--max-steps", RESUME_STEPS, "--packing", "--group-by-length")
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env(one_thread=False)
    )
    marker = out / "checkpoint-4" / "COMPLETE"
    deadline = time.monotonic() + 240
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"training exited early: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint within 240 s")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    console = process.stderr.read().decode()
    process.stderr.close()
    # The pre-flight summary: tokens per step and padding, packed and length-grouped.
    assert "tokens per step" in console and "length-grouped" in console, console[-3000:]
    assert not (out / "train_summary.json").exists(), "the run finished before it was killed"
    assert json.loads((out / "run_config.json").read_text())["packing"] is True

    resumed = run_training(
        fast_config(tiny_model_dir, data, out, resume="auto", **settings)  # type: ignore[arg-type]
    )
    assert int(Path(resumed.resumed_from).name.split("-")[1]) >= 4
    log = read_train_log(out)
    assert [e["step"] for e in log if "loss" in e] == list(range(1, RESUME_STEPS + 1))
    assert losses(log) == expected  # CPU training is deterministic: bit for bit


# -- two processes ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "grouped"), [("full", False), ("lora", False), ("full", True)])
def test_two_packed_processes_match_one_padded(
    tiny_model_dir: Path, colour_dir: Path, reference, tmp_path: Path, mode: str, grouped: bool
) -> None:
    """DDP under torchrun: 2 per device x 2 processes, each rank packing its own
    micro-batch, against the padded one-process run (2 per device x 2 accumulation); with
    `--group-by-length` both ranks draw the same length-grouped order."""
    out = tmp_path / "run"
    args = ("train", "-d", colour_dir, "-m", tiny_model_dir, "-o", out, *FAST_CLI_ARGS)
    evaluate = ("--eval-steps", "2", "--eval-split", "val", "--eval-max-samples", "2")
    grouping = ("--group-by-length",) if grouped else ()
    command = cli_command(
        *args,
        "--max-steps",
        STEPS,
        "--mode",
        mode,
        "--packing",
        *grouping,
        *evaluate,
        "--max-new-tokens",
        "2",
        processes=2,
    )
    done = subprocess.run(command, capture_output=True, text=True, env=cli_env(), timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr
    assert_same_training(out, reference(mode, group_by_length=grouped))
