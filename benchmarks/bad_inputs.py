"""Print the table of bad inputs and what each gets, from a real run (docs/reliability.md).

    .venv/bin/python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bad_inputs import CASES


def main() -> None:
    print("| where | bad input | what it gets |")
    print("| --- | --- | --- |")
    for case in CASES:
        try:
            case.call()
            got = "**no error**"
        except Exception as err:  # we print whatever is raised
            msg = str(err).replace("|", "\\|").replace("\n", " ")
            got = f"`{type(err).__name__}`: {msg}"
        print(f"| `{case.where}` | {case.what} | {got} |")


if __name__ == "__main__":
    main()
