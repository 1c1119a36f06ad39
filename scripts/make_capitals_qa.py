"""Build examples/data/capitals-qa.jsonl: short conversations that ask for a country's capital.

    python scripts/make_capitals_qa.py            # writes examples/data/capitals-qa.jsonl
    python scripts/make_capitals_qa.py --check    # exit 1 if the file differs from a fresh build

Each record is one conversation in the ``messages`` format: the user asks for the capital of one
of the countries below, in one of four phrasings, and the assistant always answers in the same
template, ``The capital of <country> is <city>.``. Every country is asked in every phrasing, so
the data repeats the table four times: a model of a few hundred thousand parameters learns both
the template and the table in a minute on a CPU, which makes it a fine-tuning example whose
result can be read. The facts are common knowledge; the file is in the public domain (CC0-1.0).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "examples" / "data" / "capitals-qa.jsonl"

CAPITALS = {
    "Argentina": "Buenos Aires", "Australia": "Canberra", "Austria": "Vienna", "Belgium": "Brussels",
    "Canada": "Ottawa", "Chile": "Santiago", "China": "Beijing", "Cuba": "Havana", "Denmark": "Copenhagen",
    "Egypt": "Cairo", "Finland": "Helsinki", "France": "Paris", "Germany": "Berlin", "Greece": "Athens",
    "Hungary": "Budapest", "India": "New Delhi", "Ireland": "Dublin", "Italy": "Rome", "Japan": "Tokyo",
    "Kenya": "Nairobi", "Mexico": "Mexico City", "Norway": "Oslo", "Peru": "Lima", "Poland": "Warsaw",
    "Portugal": "Lisbon", "Russia": "Moscow", "Spain": "Madrid", "Sweden": "Stockholm", "Thailand": "Bangkok",
    "Turkey": "Ankara", "Vietnam": "Hanoi", "Nepal": "Kathmandu",
}
QUESTIONS = [
    "What is the capital of {country}?",
    "Which city is the capital of {country}?",
    "Name the capital of {country}.",
    "{country}: what is its capital?",
]
ANSWER = "The capital of {country} is {city}."


def records() -> list[dict[str, object]]:
    recs: list[dict[str, object]] = [
        {"messages": [{"role": "user", "content": q.format(country=country)},
                      {"role": "assistant", "content": ANSWER.format(country=country, city=city)}]}
        for country, city in CAPITALS.items() for q in QUESTIONS]
    random.Random(0).shuffle(recs)  # the file reads as a mix; the Dataset's split shuffles again
    return recs


def render(recs: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in recs)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    text = render(records())
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{args.out} differs from a fresh build")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {text.count(chr(10))} conversations, {len(text.encode())} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
