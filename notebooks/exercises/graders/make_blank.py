"""Write the blank mydl (the learner's starting point) from the solutions: for maintainers.

    python notebooks/exercises/graders/make_blank.py DEST [--force]

Each '# >>> exercise NN: task' ... '# <<< exercise NN' block of solutions/mydl becomes a line that
raises NotImplementedError. It refuses to overwrite a file that differs unless --force: DEST may be
someone's work.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graders.common import SOLUTIONS_MYDL, blank_source  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    for source in sorted(SOLUTIONS_MYDL.glob("*.py")):
        text = blank_source(source.read_text(encoding="utf-8"))
        target = args.dest / source.name
        if target.exists() and target.read_text(encoding="utf-8") != text and not args.force:
            print(f"make_blank: {target} exists and differs; pass --force to overwrite it", file=sys.stderr)
            return 1
        target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
