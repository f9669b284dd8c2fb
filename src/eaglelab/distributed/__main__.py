"""``python -m eaglelab.distributed`` (also under torchrun); see launch.main."""

from eaglelab.distributed.launch import main

if __name__ == "__main__":
    raise SystemExit(main())
