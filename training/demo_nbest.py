"""Synthetic N-best lists for the demo: labelled synthetic, generated from the toy grammar.

Each reference sentence gets N distinct hypotheses: itself and corrupted copies (a word
swapped for a confusable one, dropped, or repeated). The "acoustic" score prefers fewer
edits but is noisy, so the first pass is often wrong and a language model that knows the
grammar (agreement, topic words) can fix some errors. Lists are sorted by that score, as a
decoder would write them, and carry no first-pass LM score.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rescorer.atomic import write_text_atomic
from training.demo_corpus import TOPICS, generate_sentences

_LEXICON = sorted({w for t in TOPICS.values() for group in t for w in group} | {"the", "a", "this", "that"})


def _corrupt(words: list[str], rng: random.Random) -> list[str]:
    out = list(words)
    for _ in range(rng.choice((1, 1, 2))):
        i = rng.randrange(len(out))
        kind = rng.random()
        if kind < 0.6:
            word = out[i]
            # a confusable word: same first letter where possible, else any lexicon word
            similar = [w for w in _LEXICON if w != word and w[0] == word[0]] or _LEXICON
            out[i] = rng.choice(similar)
        elif kind < 0.8 and len(out) > 2:
            del out[i]
        else:
            out.insert(i, out[i])
    return out


def make_nbest(references: list[str], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for k, ref in enumerate(references):
        words = ref.split()
        texts = {ref: 0}
        for _ in range(20 * n):
            if len(texts) >= n:
                break
            corrupted = _corrupt(words, rng)
            texts.setdefault(" ".join(corrupted), 1 + sum(a != b for a, b in zip(corrupted, words, strict=False))
                             + abs(len(corrupted) - len(words)))
        hyps = [{"text": t, "am_score": round(-2.0 * edits + rng.gauss(0.0, 2.5), 3)} for t, edits in texts.items()]
        hyps.sort(key=lambda h: -h["am_score"])
        records.append({"utt_id": f"demo-{k:05d}", "ref": ref, "synthetic": True, "hyps": hyps})
    return records


def write_demo_nbest(out_dir: str | Path, n: int = 8, utterances: int = 300, seed: int = 7) -> dict[str, Path]:
    """dev.jsonl and test.jsonl, from grammar sentences unseen in the demo corpus's seeds."""
    out_dir = Path(out_dir)
    paths = {}
    for offset, name in enumerate(("dev", "test")):
        references = generate_sentences(utterances, seed=seed * 1000 + offset)
        records = make_nbest(references, n, seed + offset)
        path = out_dir / f"{name}.jsonl"
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
        paths[name] = path
    return paths
