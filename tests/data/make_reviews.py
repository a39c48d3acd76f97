"""Writes reviews.csv: 1,200 short product reviews, labelled positive/negative, made from templates (seed 0).

A small, offline stand-in for SST-2 that the text tests and studies train a tokenizer and a BERT-style encoder
on. Negations ("not good") and mixed sentences ("good screen but awful battery") make the label depend on word
order and context, not just on single words; and 8% of the labels are flipped (reviewers who click the wrong
star), so no model reaches 100% and pruning has accuracy to lose.
Run `python tests/data/make_reviews.py` to rewrite it (the file is committed).
"""

import csv
import random
from pathlib import Path

GOOD = ["good", "great", "excellent", "wonderful", "solid", "reliable", "lovely", "superb", "fine", "sturdy"]
BAD = ["bad", "awful", "terrible", "poor", "flimsy", "broken", "noisy", "cheap", "useless", "disappointing"]
THINGS = ["battery", "screen", "keyboard", "camera", "speaker", "case", "charger", "strap", "lens", "handle",
          "motor", "display", "button", "cable", "lid"]
PRODUCTS = ["phone", "laptop", "kettle", "blender", "watch", "tablet", "headset", "drill", "lamp", "printer"]
ADVERBS = ["really", "very", "quite", "truly", "rather", "incredibly", "fairly", ""]
OPENERS = ["honestly", "overall", "after a week", "to be fair", "in short", "well", "sadly", "happily", ""]


def review(rng: random.Random) -> tuple[str, str]:
    positive = rng.random() < 0.5
    kind = rng.random()
    product, thing, other = rng.choice(PRODUCTS), *rng.sample(THINGS, 2)
    adv = rng.choice(ADVERBS)
    main, opposite = (GOOD, BAD) if positive else (BAD, GOOD)
    if kind < 0.4:
        text = f"the {thing} of this {product} is {adv} {rng.choice(main)}"
    elif kind < 0.65:  # negated opposite: "not good" is negative
        text = f"this {product} is not {rng.choice(opposite)} at all, the {thing} is {rng.choice(main)}"
    elif kind < 0.85:  # mixed: the clause after "but" decides
        text = f"{rng.choice(opposite)} {other} but the {thing} is {adv} {rng.choice(main)}, i would " + (
            "buy it again" if positive else "return it")
    else:
        text = f"i {'love' if positive else 'hate'} how {rng.choice(main)} the {thing} feels on this {product}"
    if rng.random() < 0.08:
        positive = not positive
    opener = rng.choice(OPENERS)
    text = " ".join(f"{opener}, {text}".split()) if opener else " ".join(text.split())
    return text, "positive" if positive else "negative"


def main() -> None:
    rng = random.Random(0)
    rows = [review(rng) for _ in range(1200)]
    with open(Path(__file__).with_name("reviews.csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


if __name__ == "__main__":
    main()
