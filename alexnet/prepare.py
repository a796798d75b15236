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

from minidl.data import DatasetNotFoundError, PrepareError, prepare_folder


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m alexnet.prepare",
        description="Resize (shorter side), centre-crop and pack an image-folder dataset "
                    "(ROOT/train/<class>/*, ROOT/val/<class>/*) into memory-mappable arrays in OUT.",
    )
    p.add_argument("root", metavar="ROOT", help="folder with train/<class>/ and optionally val/<class>/")
    p.add_argument("out", metavar="OUT", help="output folder (created)")
    p.add_argument("--size", type=int, default=256,
                   help="shorter side and crop size in pixels (default: 256, the paper's)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding threads (default: number of CPUs)")
    p.add_argument("--resample", choices=("bicubic", "bilinear", "lanczos"), default="bicubic",
                   help="Pillow resampling filter (default: bicubic)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.size < 1:
        print(f"prepare: error: --size must be a positive number of pixels, got {args.size}",
              file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"prepare: error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        report = prepare_folder(args.root, args.out, size=args.size, progress=not args.quiet,
                                verbose=False, workers=args.workers, resample=args.resample)
    except (DatasetNotFoundError, PrepareError) as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions, ... while writing
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prepare: interrupted; no output file was left half-written", file=sys.stderr)
        return 130
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
