"""Device names (bottom layer): the one reading of "cpu", "cuda" and "cuda:N" that training
(`train.device`), `eaglelab solve --device` and the real-matrix experiment share."""

from __future__ import annotations

import re

__all__ = ["check_device_name", "resolve_device"]

_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


def check_device_name(name: object, option: str = "device") -> str:
    """`name` if it is "cpu", "cuda" or "cuda:N", else ValueError naming `option`."""
    if not isinstance(name, str) or not _PATTERN.fullmatch(name):
        raise ValueError(f"{option}={name!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return name


def resolve_device(name: str, option: str = "device"):
    """torch.device for `name`, refusing a CUDA device this machine lacks (ValueError
    naming `option` and the fix)."""
    import torch

    device = torch.device(check_device_name(name, option))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option}={name!r} but torch finds no CUDA device here "
                             f"(torch {torch.__version__}); use {option}=cpu or install a "
                             "CUDA build of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{option}={name!r} but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return device
