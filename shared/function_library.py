"""One Redis Function library made of several Lua files: the `#!lua name=` line, then each file
in order, as one source for FUNCTION LOAD REPLACE.

A library is one Lua chunk, so a file sees the locals of the files before it (the payer index's
reader, shared/binding_index.lua, goes first in both libraries that read the index). Each file is
marked with its name, so a reader of the loaded source (FUNCTION LIST WITHCODE) finds where a
line came from.
"""

from __future__ import annotations

from importlib.resources import files


def library(name: str, *parts: tuple[str, str]) -> str:
    """The source of library `name` from (package, file name) parts, in that order."""
    sources = [f"#!lua name={name}"]
    for package, filename in parts:
        sources.append(f"-- ==== {package}/{filename} ====")
        sources.append(files(package).joinpath(filename).read_text())
    return "\n".join(sources)
