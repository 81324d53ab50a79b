#!/usr/bin/env python3
"""Check that the code shown in the documentation is code that is compiled or run.

For every ```cpp fenced block in README.md and docs/*.md, the block's non-empty lines
must appear, in the same order and as one contiguous run, in some file under examples/
or include/; for every ```python block, in some file under examples/, python/ or bench/. Lines are compared after removing leading and trailing whitespace, so
indentation may differ; blank lines are ignored on both sides.

Usage: python3 tests/docs/check_snippets.py <repo-root>

Prints each failing block with its file and line, then a summary line
"<k> passed, <f> failed". Exits with 1 if any block failed, 2 on a usage error.
"""

import pathlib
import re
import sys

FENCE_OPEN = re.compile(r"^\s*(`{3,}|~{3,})\s*(\S*)")
CPP_INFO = {"cpp", "c++", "cxx"}
PYTHON_INFO = {"python", "py"}
SOURCE_DIRS = ("examples", "include")
PYTHON_DIRS = ("examples", "python", "bench")


def normalise(lines):
    """Non-empty lines with surrounding whitespace removed."""
    return [line.strip() for line in lines if line.strip()]


def code_blocks(path):
    """Yield (first line number of the code, language, code lines) for each fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).lower()
        start = i + 1
        j = start
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and close.strip(fence[0]) == "":
                break
            j += 1
        yield start + 1, info.split("{")[0], lines[start:j]
        i = j + 1


def source_files(root, dirs=SOURCE_DIRS):
    files = []
    for d in dirs:
        base = root / d
        if base.is_dir():
            files.extend(p for p in sorted(base.rglob("*")) if p.is_file())
    texts = {}
    for p in files:
        try:
            texts[p] = normalise(p.read_text(encoding="utf-8").splitlines())
        except (UnicodeDecodeError, OSError):
            continue
    return texts


def longest_prefix(block, text):
    """Length of the longest prefix of `block` that occurs contiguously in `text`."""
    best = 0
    first = block[0]
    for start, line in enumerate(text):
        if line != first:
            continue
        k = 0
        while k < len(block) and start + k < len(text) and text[start + k] == block[k]:
            k += 1
        if k == len(block):
            return k
        best = max(best, k)
    return best


def main(argv):
    if len(argv) != 2:
        print("usage: python3 tests/docs/check_snippets.py <repo-root>", file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1]).resolve()
    if not root.is_dir():
        print(f"check_snippets: {root} is not a directory", file=sys.stderr)
        return 2

    docs = []
    if (root / "README.md").is_file():
        docs.append(root / "README.md")
    if (root / "docs").is_dir():
        docs.extend(sorted((root / "docs").glob("*.md")))
    sources_of = {"cpp": (source_files(root), SOURCE_DIRS), "python": (source_files(root, PYTHON_DIRS), PYTHON_DIRS)}

    passed = failed = 0
    for doc in docs:
        for line_no, info, code in code_blocks(doc):
            if info in CPP_INFO:
                lang = "cpp"
            elif info in PYTHON_INFO:
                lang = "python"
            else:
                continue
            sources, dirs = sources_of[lang]
            block = normalise(code)
            where = f"{doc.relative_to(root)}:{line_no}"
            if not block:
                failed += 1
                print(f"FAIL {where}: empty {lang} block")
                continue
            best, best_file = 0, None
            for path, text in sources.items():
                k = longest_prefix(block, text)
                if k > best:
                    best, best_file = k, path
                if k == len(block):
                    break
            if best == len(block):
                passed += 1
                continue
            failed += 1
            print(f"FAIL {where}: {lang} block not found verbatim under {' or '.join(d + '/' for d in dirs)}")
            if best_file is not None:
                print(f"  longest match: {best} of {len(block)} lines, in {best_file.relative_to(root)};"
                      f" first line that differs: {block[best]!r}")
            else:
                print(f"  its first line occurs nowhere: {block[0]!r}")
            for line in code:
                print(f"  | {line}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
