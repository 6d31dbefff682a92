"""Option names the command lines share: one name per thing, the old ones kept one release.

The harness (Locust), ``python -m loadtest.stack``, ``analyze.py`` and the synthetic-run
generator each grew their own spelling for the same thing (the balancer's port was
``--stack-port`` and ``--port``; the replica counts ``--scale-levels`` and ``--levels``),
and ``analyze.py``'s ``--balance`` (the policy judged) read like the harness's
``--balancer`` (which balancer runs). The one name is what every command line calls the
thing now; an old name still works, and says the new one on stderr, in one line, so that
scripts keep running while they are moved. It lives here, in the lowest layer, because
every command line above uses it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

#: old spelling -> the one name, on every command line that had the old one.
RENAMED: dict[str, str] = {
    "--port": "--stack-port",          # python -m loadtest.stack up
    "--levels": "--scale-levels",      # python -m loadtest.contract.synth
    "--balance": "--balance-policy",   # analyze.py, scalecheck analyze / check
}


class RenamedOption(argparse.Action):
    """``store``, and when the option is given by an old name (one of ``RENAMED``), one
    warning line naming the new one: the old name is an alias for one release."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string in RENAMED:
            print(f"{parser.prog}: warning: {option_string} is now {RENAMED[option_string]} "
                  f"({option_string} still works, for one release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed(add, name: str, *, old: Sequence[str], **kwargs: Any) -> argparse.Action:
    """Declare option ``name`` with its ``old`` spellings as aliases that warn (``add``:
    a parser's or a group's ``add_argument``)."""
    unknown = [flag for flag in old if RENAMED.get(flag) != name]
    if unknown:  # a programming error: the table is what the docs and the warning say
        raise ValueError(f"{', '.join(unknown)} is not recorded in RENAMED as old for {name}")
    return add(name, *old, action=RenamedOption, **kwargs)
