"""One parser for settings written as text (bottom layer, no eaglelab imports): the
`section.field=value` overrides of training (`train.config.apply_overrides`) and the
`--set key=value` overrides of experiments (`experiments._common.make_config`) read a value
as the type of the setting's current value."""

from __future__ import annotations

from typing import Any

__all__ = ["parse_setting"]

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_setting(key: str, text: Any, like: Any) -> Any:
    """`text` as the type of `like`: bool (1/true/yes/on, 0/false/no/off), int, float, a
    tuple of numbers written comma-separated, or the text itself (str, or a setting whose
    current value is None).  A value that is not text is returned as given, except that a
    number for a float setting becomes a float.  Raises
    ValueError "KEY: cannot read TEXT as TYPE", KEY the caller's name for the setting."""
    if (isinstance(like, float) and isinstance(text, int | float)
            and not isinstance(text, bool)):
        return float(text)            # 0 and 0.0 are one setting (and one config hash)
    if not isinstance(text, str) or isinstance(like, str) or like is None:
        return text
    low = text.strip().lower()
    kind = type(like).__name__
    try:
        if isinstance(like, bool):
            if low in TRUE:
                return True
            if low in FALSE:
                return False
            raise ValueError(text)
        if isinstance(like, int):
            return int(low)
        if isinstance(like, float):
            return float(low)
        if isinstance(like, tuple):
            return tuple(float(x) if "." in x or "e" in x.lower() else int(x)
                         for x in low.split(",") if x.strip())
    except ValueError:
        expected = {"bool": "true/false", "int": "an integer", "float": "a number"}.get(kind, kind)
        raise ValueError(f"{key}: cannot read {text!r} as {kind} (expected "
                         f"{expected})") from None
    return text
