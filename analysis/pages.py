"""One figure per page: rows split by the keys that vary (system, model, placement, statistic, ...),
each page titled and named by its values."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.dataset import is_true

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def pages(df: pd.DataFrame, keys: list[str]):
    """Split rows into one figure per combination of the varying `keys` (model, system, ...)."""
    varying = [k for k in keys if k in df.columns and df[k].nunique(dropna=True) > 1]
    if not varying:
        yield {}, df
        return
    for values, part in df.groupby(varying, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        yield dict(zip(varying, values, strict=True)), part


def page_words(page: dict) -> dict[str, str]:
    """A page's values as a title shows them: the placement and the statistic in words."""
    words = {}
    for key, value in page.items():
        if key == "in_place" and value == value:
            words[key] = "in-place" if is_true(value) else "out-of-place"
        elif key == "statistic" and isinstance(value, str):
            words[key] = f"{value} over ranks"
        else:
            words[key] = f"{key}={value}"
    return words


def page_title(base: str, page: dict) -> str:
    extra = ", ".join(page_words(page).values())
    return f"{base} ({extra})" if extra else base


def page_slug(name: str, page: dict) -> str:
    """A file name per page; the placement reads `in-place` / `out-of-place`, not true / false."""
    values = [
        ("in-place" if is_true(v) else "out-of-place") if k == "in_place" and v == v else v
        for k, v in page.items()
    ]
    return slug(name, *values)


def slug(*parts: object) -> str:
    text = "-".join(str(p) for p in parts if p is not None and str(p) != "" and p == p)
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-").lower()
