"""How long loops report their progress without the library knowing about terminals.

A step that walks many images takes a `Progress`; the CLI passes a progress bar, everything
else (the service, the tests, deployments) passes nothing and the loop runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    def __call__(self, items: Iterable[T], total: int, what: str) -> Iterable[T]:
        """Yield `items` unchanged while showing `what` advancing towards `total`."""
        ...


def silent(items: Iterable[T], total: int, what: str) -> Iterable[T]:
    """The default `Progress`: no output."""
    return items


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter), pulled lazily from `items`.

    Lazily, so a progress bar wrapped around `items` advances per item, not per batch.
    """
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
