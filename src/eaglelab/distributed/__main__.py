"""``python -m eaglelab.distributed`` (also what torchrun starts on every rank): the
command line of `eaglelab.cli.distributed_cmd` (an entry point, so above every layer)."""

from eaglelab.cli.distributed_cmd import module_main

if __name__ == "__main__":
    raise SystemExit(module_main())
