"""A sample worker: reads source text, builds a word index and a line table, then
holds them in memory until it is killed. Used by make-samples.sh."""
import collections
import os
import re
import signal
import sys

root, limit = sys.argv[1], int(sys.argv[2])
texts, total = [], 0
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
        if not name.endswith(sys.argv[3] if len(sys.argv) > 3 else ".py"):
            continue
        try:
            with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        texts.append(text)
        total += len(text)
        if total >= limit:
            break
    if total >= limit:
        break

lines = [line for text in texts for line in text.splitlines()]
index = collections.defaultdict(list)
for number, line in enumerate(lines):
    for word in re.findall(r"[A-Za-z_]\w+", line):
        index[word].append(number)
table = [(number, len(line), line.strip()[:40]) for number, line in enumerate(lines)]
frequent = collections.Counter({word: len(found) for word, found in index.items()})
top = frequent.most_common(500)
print("ready", len(lines), "lines", len(index), "words", flush=True)
while True:
    signal.pause()
