"""A small corpus generated deterministically from a toy grammar, for `make demo` and tests.

Nothing is downloaded or copied: the same seed gives the same sentences on every machine.
The grammar has agreement (a plural subject takes a plural verb) and topic words that
co-occur, so an LSTM has real structure to learn and a unigram model does clearly worse.

A sub-domain (`write_demo_domain`) draws every sentence from one topic: the in-domain text that
the demo adapts the general model to (paper 1's setting in miniature).
"""

from __future__ import annotations

import random
from pathlib import Path

from rescorer.atomic import write_text_atomic
from rescorer.errors import ConfigError

DETERMINERS = ["the", "a", "this", "that", "every", "one"]
PLURAL_DETERMINERS = ["the", "some", "these", "those", "many", "two", "three"]
TOPICS = {
    "kitchen": (["cook", "baker", "chef", "waiter"], ["bread", "soup", "cake", "pie", "salad"],
                ["bakes", "cooks", "serves", "tastes"], ["hot", "fresh", "sweet", "salty"]),
    "garden": (["gardener", "farmer", "child", "neighbor"], ["tree", "rose", "tomato", "fence", "seed"],
               ["plants", "waters", "grows", "picks"], ["green", "tall", "wild", "ripe"]),
    "office": (["manager", "clerk", "lawyer", "engineer"], ["report", "contract", "letter", "budget", "plan"],
               ["writes", "signs", "reads", "reviews"], ["long", "final", "new", "short"]),
    "harbor": (["sailor", "captain", "fisher", "pilot"], ["boat", "net", "rope", "anchor", "map"],
               ["repairs", "ties", "checks", "carries"], ["old", "heavy", "wet", "strong"]),
}
TIMES = ["today", "yesterday", "in the morning", "at night", "every day", "on monday"]
PLACES = {"kitchen": "in the kitchen", "garden": "in the garden", "office": "at the office",
          "harbor": "at the harbor"}


def _plural(noun: str) -> str:
    return noun[:-1] + "ies" if noun.endswith("y") and noun[-2] not in "aeiou" else noun + "s"


def _verb_plural(verb: str) -> str:
    """The form a plural subject takes: carries -> carry, ties -> tie, watches -> watch, bakes -> bake."""
    if verb.endswith("ies") and len(verb) > 4:  # carries -> carry; but ties -> tie
        return verb[:-3] + "y"
    return verb[:-2] if verb.endswith("es") and verb[:-2].endswith(("sh", "ch", "x", "s")) else verb[:-1]


DEMO_DOMAIN = "harbor"


def _sentence(rng: random.Random, topics: list[str]) -> str:
    topic = rng.choice(topics)
    agents, objects, verbs, adjectives = TOPICS[topic]
    plural = rng.random() < 0.35
    agent = rng.choice(agents)
    subject = (f"{rng.choice(PLURAL_DETERMINERS)} {_plural(agent)}" if plural
               else f"{rng.choice(DETERMINERS)} {agent}")
    verb = rng.choice(verbs)
    verb = _verb_plural(verb) if plural else verb
    obj = rng.choice(objects)
    if rng.random() < 0.5:
        obj = f"{rng.choice(adjectives)} {obj}"
    words = [subject, verb, f"{rng.choice(DETERMINERS)} {obj}"]
    if rng.random() < 0.4:
        words.append(PLACES[topic])
    if rng.random() < 0.3:
        words.append(rng.choice(TIMES))
    if rng.random() < 0.15:
        words.append(f"and {'they' if plural else 'it'} {'are' if plural else 'is'} {rng.choice(adjectives)}")
    return " ".join(words)


def generate_sentences(count: int, seed: int, topics: list[str] | None = None) -> list[str]:
    rng = random.Random(seed)
    topics = sorted(topics or TOPICS)
    return [_sentence(rng, topics) for _ in range(count)]


def write_demo_corpus(out_dir: str | Path, train: int = 6000, dev: int = 500, test: int = 500,
                      seed: int = 20261120) -> dict[str, Path]:
    """Write train.txt, dev.txt and test.txt (disjoint seeds) under `out_dir`."""
    out_dir = Path(out_dir)
    paths = {}
    for offset, (name, count) in enumerate((("train", train), ("dev", dev), ("test", test))):
        path = out_dir / f"{name}.txt"
        write_text_atomic(path, "\n".join(generate_sentences(count, seed + offset)) + "\n")
        paths[name] = path
    return paths


def write_demo_domain(out_dir: str | Path, topic: str = DEMO_DOMAIN, train: int = 400, dev: int = 200,
                      test: int = 200, seed: int = 20261121) -> dict[str, Path]:
    """In-domain train/dev/test.txt under `out_dir`: every sentence about `topic`."""
    if topic not in TOPICS:
        raise ConfigError(f"unknown demo topic {topic!r}; expected one of {sorted(TOPICS)}")
    out_dir = Path(out_dir)
    paths = {}
    for offset, (name, count) in enumerate((("train", train), ("dev", dev), ("test", test))):
        path = out_dir / f"{name}.txt"
        write_text_atomic(path, "\n".join(generate_sentences(count, seed + offset, [topic])) + "\n")
        paths[f"domain-{name}"] = path
    return paths
