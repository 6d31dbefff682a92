"""The command blocks of the project's Markdown (README.md, docs/, examples/*/README.md),
read as the tests run them: each ```sh block, its logical commands, and what an HTML
comment just above it says about running it.

A block runs as written, from the project's root. A comment may say otherwise, with
``|``-separated fields::

    <!-- doc-test: skip | why: REASON | holds: SHELL -->        not run; SHELL (exit 0)
                                                               proves REASON still holds
    <!-- doc-test: skip-line TEXT | why: … | holds: … -->      one command (containing TEXT)
                                                               not run, same proof
    <!-- doc-test: before: SHELL | after: SHELL -->            what the block needs around it
                                                               (an app to point at), not
                                                               part of the block
    <!-- doc-test: cwd: DIR -->                                run from DIR (from the root)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")
SHELLS = {"sh", "bash", "shell"}
NOTE = re.compile(r"^<!--\s*doc-test:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    path: Path
    line: int                      # of the opening fence, 1-based
    text: str
    skip: bool = False
    skip_lines: list[str] = field(default_factory=list)
    why: str = ""
    holds: str = ""
    before: str = ""
    after: str = ""
    cwd: str = "."

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"

    def commands(self) -> list[str]:
        """Logical commands: continuation lines joined, blank and comment-only lines gone."""
        out, current = [], ""
        for raw in self.text.splitlines():
            line = raw.rstrip()
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            out.append((current + line).strip())
            current = ""
        if current.strip():
            out.append(current.strip())
        return out

    def runnable(self) -> list[str]:
        return [c for c in self.commands() if not any(s in c for s in self.skip_lines)]


def blocks(root: Path) -> list[Block]:
    files = [root / "README.md", *sorted((root / "docs").rglob("*.md")),
             *sorted(root.glob("examples/*/README.md"))]
    return [b for f in files if f.exists() for b in read(f, root)]


def read(path: Path, root: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                   len(lines))
        if match.group(1) in SHELLS:
            block = Block(path.relative_to(root), i + 1, "\n".join(lines[i + 1:end]) + "\n")
            note = _note_above(lines, i)
            if note is not None:
                _apply(block, note)
            out.append(block)
        i = end + 1
    return out


def _note_above(lines: list[str], i: int) -> str | None:
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    match = NOTE.match(lines[j]) if j >= 0 else None
    return match.group(1) if match else None


def _apply(block: Block, note: str) -> None:
    for part in (p.strip() for p in note.split(" | ")):
        key, _, value = part.partition(":") if ":" in part.split(" ")[0] else (part, "", "")
        key, value = key.strip(), value.strip()
        if key == "skip":
            block.skip = True
        elif key.startswith("skip-line "):
            block.skip_lines.append(key[len("skip-line "):].strip())
        elif key in ("why", "holds", "before", "after", "cwd"):
            setattr(block, key, value)
        else:
            raise ValueError(f"{block.name}: unknown doc-test field {part!r}")
