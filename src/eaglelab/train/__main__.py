"""`python -m eaglelab.train --regime R --seeds K --steps N --out DIR [key=value ...]`
or `python -m eaglelab.train --resume DIR` (the same entry point as `eaglelab train`)."""

from __future__ import annotations

import argparse
import sys

from eaglelab.train.cli import cli_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eaglelab.train")
    parser.add_argument("--regime")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--out", required=False)
    parser.add_argument("--resume", metavar="RUN_DIR")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("overrides", nargs="*", help="section.field=value")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.overrides:
        if "=" not in item:
            parser.error(f"override {item!r} must look like section.field=value")
        key, value = item.split("=", 1)
        overrides[key] = value
    try:
        if args.resume:
            out = cli_train(args.regime, args.seeds, args.steps, args.resume, resume=True,
                            overrides=overrides, quiet=args.quiet)
        else:
            if not args.out:
                parser.error("--out RUN_DIR is required (or --resume RUN_DIR)")
            out = cli_train(args.regime, args.seeds, args.steps, args.out, resume=False,
                            overrides=overrides, quiet=args.quiet)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
