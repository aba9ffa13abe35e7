"""Template choice: deterministic per record, fixed index, custom template checks; the
built-in memes and NLVR2 lists are the Cauldron's, in its order."""

from __future__ import annotations

from collections import Counter

import pytest

from converters.prompts import PromptChoice, choose_template, line_breaks, seeded_index
from converters.sources import hateful_memes as memes
from converters.sources import nlvr2
from phi3v_data.flags import FlagError

TEMPLATES = ("a {x}", "b {x}", "c {x}")


def test_seeded_choice_depends_only_on_seed_and_key() -> None:
    keys = [f"id-{i}" for i in range(300)]
    picks = [seeded_index(0, key, 3) for key in keys]
    assert picks == [seeded_index(0, key, 3) for key in reversed(keys)][::-1]
    assert min(Counter(picks).values()) > 70  # roughly uniform
    assert picks != [seeded_index(1, key, 3) for key in keys]
    assert seeded_index(0, "id-0", 3) == 2  # recorded value: changing the rule changes outputs


def test_precedence_custom_then_index_then_seed() -> None:
    assert choose_template(TEMPLATES, "k", PromptChoice(template="mine")) == "mine"
    assert choose_template(TEMPLATES, "k", PromptChoice(index=2)) == "c {x}"
    assert (
        choose_template(TEMPLATES, "k", PromptChoice(seed=0)) == TEMPLATES[seeded_index(0, "k", 3)]
    )


def test_cli_values_are_checked() -> None:
    choice = PromptChoice(template=line_breaks("Q {x}\\nA"))
    assert choice.checked(TEMPLATES, {"x"}).template == "Q {x}\nA"
    with pytest.raises(FlagError, match=r"0\.\.2") as index:
        PromptChoice(index=3).checked(TEMPLATES, {"x"})
    assert index.value.flag == "--prompt-index"
    with pytest.raises(FlagError, match="unknown field") as unknown:
        PromptChoice(template="{y}").checked(TEMPLATES, {"x"})
    assert unknown.value.flag == "--prompt"
    with pytest.raises(FlagError, match="not a valid template"):
        PromptChoice(template="{x").checked(TEMPLATES, {"x"})


# The reference reads the memes and NLVR2 prompts from HuggingFaceM4/the_cauldron; its build
# script's lists, in its order, written out here so `--prompt-index K` is the Cauldron's K-th.
CAULDRON_MEMES_QUESTIONS = [
    "Is the sentiment of this meme offensive?",
    "Does this meme promote hate speech?",
    "Can this meme be considered disrespectful?",
    "Does this meme carry a negative message?",
    "Is this meme spreading toxicity?",
    "Can this meme be harmful to a community?",
    "Is the humor in this meme in bad taste?",
    "Is the message of this meme aggressive?",
    "Does this meme support discrimination?",
    "Is the language used in this meme hateful?",
    "Can this meme be interpreted as derogatory?",
]
CAULDRON_NLVR2_TEMPLATES = [
    'Evaluate the accuracy of this statement regarding the images: "{caption}". Is it true?',
    'Given the left and right images, does the statement "{caption}" hold true?',
    'Assess this claim about the two images: "{caption}". Correct or not?',
    'For the images shown, is this caption "{caption}" true?',
    'Considering the images on both sides, is "{caption}" valid?',
    'Analyze the images presented: Is the assertion "{caption}" valid?',
    'For the images displayed, is the sentence "{caption}" factually correct?',
    'Examine the images to the left and right. Is the description "{caption}" accurate?',
]


def test_memes_templates_are_the_cauldrons_in_its_order() -> None:
    assert list(memes.TEMPLATES) == [q + "\nAnswer yes or no." for q in CAULDRON_MEMES_QUESTIONS]
    choice = PromptChoice(index=3).checked(memes.TEMPLATES, {"text"})
    assert choose_template(memes.TEMPLATES, "train/1", choice) == (
        "Does this meme carry a negative message?\nAnswer yes or no."
    )
    assert memes.TEMPLATES[10] == "Can this meme be interpreted as derogatory?\nAnswer yes or no."
    with pytest.raises(FlagError, match=r"11 built-in templates: choose 0\.\.10"):
        memes.MemesOptions(prompt=PromptChoice(index=11))


def test_nlvr2_templates_are_the_cauldrons_in_its_order() -> None:
    prefix = "The first image is the image on the left, the second image is the image on the right."
    assert list(nlvr2.TEMPLATES) == [
        f"{prefix} {template} Answer yes or no." for template in CAULDRON_NLVR2_TEMPLATES
    ]
    choice = PromptChoice(index=0).checked(nlvr2.TEMPLATES, {"caption"})
    assert choose_template(nlvr2.TEMPLATES, "dev-1-0-0", choice).format(caption="Two dogs.") == (
        "The first image is the image on the left, the second image is the image on the right. "
        'Evaluate the accuracy of this statement regarding the images: "Two dogs.". Is it true? '
        "Answer yes or no."
    )
    assert nlvr2.TEMPLATES[7].format(caption="A cat.") == (
        "The first image is the image on the left, the second image is the image on the right. "
        'Examine the images to the left and right. Is the description "A cat." accurate? '
        "Answer yes or no."
    )
    with pytest.raises(FlagError, match=r"8 built-in templates: choose 0\.\.7"):
        nlvr2.NLVR2Options(prompt=PromptChoice(index=8))


def test_seeded_choice_spreads_over_every_cauldron_template() -> None:
    for templates in (memes.TEMPLATES, nlvr2.TEMPLATES):
        picks = {choose_template(templates, f"id-{i}", PromptChoice()) for i in range(400)}
        assert picks == set(templates)
