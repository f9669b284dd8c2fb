"""``python -m eaglelab.train [eaglelab train options]``: the same command as
`eaglelab train` (an entry point, so above every layer)."""

import sys

from eaglelab.cli import app
from eaglelab.cli._common import invoke

if __name__ == "__main__":
    raise SystemExit(invoke(app, ["train", *sys.argv[1:]], "python -m eaglelab.train"))
