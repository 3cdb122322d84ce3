"""Word count over the text files of a directory: bramble run wordcount.py [DIR].

DIR defaults to ``wordcount-input`` next to this file (in the shared jobs directory); when it
does not exist the job writes a small corpus with known counts first. One task per file counts
its words; the driver merges the counts, prints the top ten and checks them against a
single-process count.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

WORD = re.compile(r"[a-z']+")
CORPUS = {
    "raspi.txt": "a stack of small boards makes a cluster and a cluster runs jobs\n",
    "bramble.txt": "bramble turns small boards into a cluster from one spec file\n",
    "jobs.txt": "jobs run on every node of the cluster and the cluster reports back\n",
}


def count_file(path: str) -> dict[str, int]:
    """Word counts of one text file."""
    text = Path(path).read_text(encoding="utf-8", errors="replace").lower()
    return dict(collections.Counter(WORD.findall(text)))


def make_corpus(directory: Path) -> None:
    """Write a small corpus, repeated so each file has some weight."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, line in CORPUS.items():
        (directory / name).write_text(line * 200, encoding="utf-8")


def main(client, directory: str = "") -> dict[str, int]:
    root = Path(directory) if directory else Path(sys.argv[0]).resolve().parent / "wordcount-input"
    if not root.exists():
        make_corpus(root)
    files = sorted(str(p) for p in root.glob("*.txt"))
    assert files, f"no .txt files in {root}"
    total: collections.Counter[str] = collections.Counter()
    for counts in client.gather(client.map(count_file, files)):
        total.update(counts)
    expected: collections.Counter[str] = collections.Counter()
    for f in files:
        expected.update(count_file(f))
    for word, n in total.most_common(10):
        print(f"{n:8d} {word}")
    print(f"{sum(total.values())} words, {len(total)} distinct, {len(files)} files")
    assert total == expected, "distributed count differs from the local count"
    print("check: ok")
    return dict(total.most_common(3))
