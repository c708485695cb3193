"""The repository speaks of the product: no text names the people, roles or process that built it."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".txt",
    ".html",
    ".js",
    ".css",
    ".yml",
    ".yaml",
    ".toml",
    ".cfg",
    ".ini",
    ".service",
    ".sh",
}
TEXT_NAMES = {"Makefile", "Dockerfile", "Procfile", ".env.example", "run"}
SKIPPED_FOLDERS = {".git", ".venv", "venv", "node_modules", "var", "staticfiles", "__pycache__", "data", "fixtures"}
PROCESS_WORDS = re.compile(
    r"\b(engineers?|the lead|lead's|integrator|team rules|agreed (api|names?|reference|ones?)|owner: |owned by other"
    r"|shipped it|previous session|helper session|issue #?\d+)\b",
    re.IGNORECASE,
)


def _text_files() -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS]
        files += [Path(folder) / n for n in names if Path(n).suffix in TEXT_SUFFIXES or n in TEXT_NAMES]
    return [path for path in files if path != Path(__file__)]


def test_the_finder_reads_code_and_docs():
    names = {str(path.relative_to(ROOT)) for path in _text_files()}
    assert {"README.md", "config/settings.py", "engine/README.md", ".env.example", "Makefile"} <= names


def test_no_text_names_who_built_what_or_how():
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
        for path in _text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if PROCESS_WORDS.search(line)
    ]
    assert not hits, "describe the product, not who built it or how:\n" + "\n".join(hits)


def test_the_pattern_catches_process_notes_and_spares_product_words():
    assert PROCESS_WORDS.search("(owner: news engineer)") and PROCESS_WORDS.search("Target (issue 4): 95%")
    assert PROCESS_WORDS.search("used by the lead's demo command")
    assert not PROCESS_WORDS.search("raise EngineError(message)  # the leading candle; owner's sockets")
