"""Prepare an ImageNet-style folder for training: ``python -m alexnet.prepare ROOT OUT``.

ROOT holds ``train/<class>/<images>`` and optionally ``val/<class>/<images>``.
Every image is decoded, its shorter side resized to 256 and the central
256x256 crop kept (the paper's preprocessing, Section 2); each split is packed
into ``OUT/<split>_images.npy`` (uint8 (N, 3, 256, 256)) with its labels, the
class names, the training-set mean and RGB PCA statistics, and the list of
unreadable files that were skipped. Training then memory-maps OUT
(``minidl.data.PreparedDataset``).

Exit status: 0 on success, 2 on a user error (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys

from minidl.data import prepare_folder
from minidl.data.prepare import MAX_SIZE

from .cli import OneLineParser, bounded_int, display_text, positive_int, run_cli, user_path


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m alexnet.prepare",
        description="Resize (shorter side), centre-crop and pack an image-folder dataset "
                    "(ROOT/train/<class>/*, ROOT/val/<class>/*) into memory-mappable arrays in OUT.",
    )
    p.add_argument("root", metavar="ROOT", type=user_path,
                   help="folder with train/<class>/ and optionally val/<class>/")
    p.add_argument("out", metavar="OUT", type=user_path, help="output folder (created)")
    p.add_argument("--size", type=bounded_int(1, MAX_SIZE), default=256,
                   help=f"shorter side and crop size in pixels, 1 to {MAX_SIZE} (default: 256, the paper's)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="decoding threads (default: number of CPUs)")
    p.add_argument("--resample", choices=("bicubic", "bilinear", "lanczos"), default="bicubic",
                   help="Pillow resampling filter (default: bicubic)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _main(argv):
    args = build_parser().parse_args(argv)
    try:
        report = prepare_folder(args.root, args.out, size=args.size, progress=not args.quiet and sys.stderr.isatty(),
                                verbose=False, workers=args.workers, resample=args.resample)
    except KeyboardInterrupt:
        print("prepare: interrupted; no output file was left half-written", file=sys.stderr)
        return 130
    print(display_text(report.summary()))
    return 0


def main(argv=None) -> int:
    return run_cli("prepare", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
