"""Build the DPO example's data: capitals answered two ways, and pairs preferring one of them.

    python scripts/make_capitals_preference.py            # writes both files into examples/data/
    python scripts/make_capitals_preference.py --check    # exit 1 if either differs from a fresh build

The questions and the table are those of ``capitals-qa.jsonl`` (scripts/make_capitals_qa.py).

- ``capitals-qa-mixed.jsonl``: the 128 conversations, each answered at random (seeded) in one of
  two phrasings, ``The capital of France is Paris.`` or ``France's capital is Paris.``. A model
  fine-tuned on it answers about half the questions one way and half the other.
- ``capitals-preference.jsonl``: for every question, the pair that prefers ``France's capital is
  Paris.`` (chosen) to ``The capital of France is Paris.`` (rejected), in the standard preference
  shape (``prompt``, ``chosen``, ``rejected``). DPO on these pairs makes the fine-tuned model
  answer in the preferred phrasing: a preference between two things the model already does,
  which is what preference tuning is for.

Public domain (CC0-1.0).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_capitals_qa import ANSWER, CAPITALS, QUESTIONS

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
MIXED = DATA / "capitals-qa-mixed.jsonl"
PAIRS = DATA / "capitals-preference.jsonl"
PREFERRED = "{country}'s capital is {city}."


def mixed() -> list[dict[str, object]]:
    rng = random.Random(2)
    recs: list[dict[str, object]] = []
    for country, city in CAPITALS.items():
        for q in QUESTIONS:
            answer = (ANSWER if rng.random() < 0.5 else PREFERRED).format(country=country, city=city)
            recs.append({"messages": [{"role": "user", "content": q.format(country=country)},
                                      {"role": "assistant", "content": answer}]})
    rng.shuffle(recs)
    return recs


def pairs() -> list[dict[str, object]]:
    recs: list[dict[str, object]] = [
        {"prompt": q.format(country=country), "chosen": PREFERRED.format(country=country, city=city),
         "rejected": ANSWER.format(country=country, city=city)}
        for country, city in CAPITALS.items() for q in QUESTIONS]
    random.Random(3).shuffle(recs)
    return recs


def render(recs: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in recs)


FILES = {MIXED: mixed, PAIRS: pairs}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files")
    args = parser.parse_args()
    stale = []
    for path, build in FILES.items():
        text = render(build())
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}: {text.count(chr(10))} records, {len(text.encode())} bytes")
    if args.check:
        print("up to date" if not stale else "differ from a fresh build: " + ", ".join(map(str, stale)))
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
