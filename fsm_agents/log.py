"""`PersistentLog`: an immutable, append-only sequence with structural sharing.

A conversation grows by one or two messages per step and is kept by every snapshot of a run, so
`append` must not copy the history. This is the persistent vector of Bagwell (2000, "Ideal Hash
Trees") as used by Clojure: a 32-way trie of tuples plus a tail tuple of up to 32 items.

- `append` copies at most 32 references per trie level (depth ⌈log32 n⌉: 2 levels hold 1,024
  items, 3 hold 32,768), so its cost does not grow with the history;
- indexing walks the trie (same depth); iteration yields leaf tuples in order;
- every node is a tuple, so the log is deeply immutable when its items are, and hashable.

Two logs that share a prefix (a fork) share its nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

__all__ = ["PersistentLog"]

T = TypeVar("T")

_BITS = 5
_WIDTH = 1 << _BITS
_MASK = _WIDTH - 1


def _new_path(level: int, node: tuple[Any, ...]) -> tuple[Any, ...]:
    while level > 0:
        node = (node,)
        level -= _BITS
    return node


def _push_tail(size: int, level: int, parent: tuple[Any, ...], tail: tuple[Any, ...]) -> tuple[Any, ...]:
    # `size` counts the items before the new tail leaf; the leaf goes at index `size`. The log only
    # grows at its end, so the leaf is always the last child of its parent, and the path to it
    # always runs through the last child of each node (or a new one).
    if level == _BITS:
        return (*parent, tail)
    sub = (size >> level) & _MASK
    if sub < len(parent):  # the last child has room: copy the path down to it
        return (*parent[:sub], _push_tail(size, level - _BITS, parent[sub], tail))
    return (*parent, _new_path(level - _BITS, tail))


class PersistentLog(Sequence[T], Generic[T]):
    """Immutable sequence; `log.append(*items)` returns a new log sharing this one's nodes.

    Reads like a tuple: `len`, indexing (negative too), slicing (returns a tuple), iteration,
    `==` with another `PersistentLog` or a tuple/list of equal items, `hash`.
    """

    __slots__ = ("_hash", "_root", "_shift", "_size", "_tail")

    _root: tuple[Any, ...]
    _tail: tuple[T, ...]
    _size: int
    _shift: int
    _hash: int | None

    def __init__(self, items: Iterable[T] = ()) -> None:
        log: PersistentLog[T] = self._make((), (), 0, _BITS).append(*items)
        self._root, self._tail, self._size, self._shift = log._root, log._tail, log._size, log._shift
        self._hash = None

    @classmethod
    def _make(cls, root: tuple[Any, ...], tail: tuple[T, ...], size: int, shift: int) -> PersistentLog[T]:
        new = object.__new__(cls)
        new._root, new._tail, new._size, new._shift, new._hash = root, tail, size, shift, None
        return new

    def append(self, *items: T) -> PersistentLog[T]:
        """A new log with `items` added at the end; O(k · log32 n) for k items, no history copy."""
        root, tail, size, shift = self._root, self._tail, self._size, self._shift
        for item in items:
            if len(tail) < _WIDTH:
                tail = (*tail, item)
            else:
                tail_offset = size - _WIDTH
                if (tail_offset >> _BITS) >= (1 << shift):
                    root = (root, _new_path(shift, tail))
                    shift += _BITS
                else:
                    root = _push_tail(tail_offset, shift, root, tail)
                tail = (item,)
            size += 1
        return self._make(root, tail, size, shift)

    def __len__(self) -> int:
        return self._size

    def _leaf_for(self, i: int) -> tuple[Any, ...]:
        if i >= self._size - len(self._tail):
            return self._tail
        node = self._root
        level = self._shift
        while level > 0:
            node = node[(i >> level) & _MASK]
            level -= _BITS
        return node

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...

    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        i = index + self._size if index < 0 else index
        if not 0 <= i < self._size:
            raise IndexError(f"PersistentLog index {index} out of range for length {self._size}")
        return self._leaf_for(i)[i & _MASK]  # type: ignore[no-any-return]

    def _leaves(self, node: tuple[Any, ...], level: int) -> Iterator[tuple[Any, ...]]:
        if level == 0:
            yield node
            return
        for child in node:
            yield from self._leaves(child, level - _BITS)

    def __iter__(self) -> Iterator[T]:
        if self._size > len(self._tail):
            for leaf in self._leaves(self._root, self._shift):
                yield from leaf
        yield from self._tail

    def __reversed__(self) -> Iterator[T]:
        return reversed(tuple(self))

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, PersistentLog):
            if self._size != other._size:
                return False
            if self._root is other._root and self._tail is other._tail:
                return True
            return all(a == b for a, b in zip(self, other, strict=True))
        if isinstance(other, (tuple, list)):
            return self._size == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self))
        return self._hash

    def __repr__(self) -> str:
        return f"PersistentLog({list(self)!r})"

    def is_prefix_of(self, other: PersistentLog[T]) -> bool:
        """True when `other` starts with every item of this log, in order."""
        if len(other) < self._size:
            return False
        return all(a == b for a, b in zip(self, other))  # noqa: B905  (other may be longer)
