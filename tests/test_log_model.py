"""`PersistentLog` against a plain list model: equality, hashing, prefixes, and logs deep enough to
use every level of the trie.

The trie holds 32 items per leaf and 32 children per node, plus a tail of up to 32 items: one
root level covers 32 · 32 + 32 = 1,056 items, two levels 32³ + 32² + 32 = 33,824. The replay and
append-only checks of `check_machine` rest on `==` and `is_prefix_of`, so both are tested on
logs that differ in each way a conversation can: one item, the length, a fork of a shared root.
"""

from __future__ import annotations

import random

import pytest

from fsm_agents.log import PersistentLog

ONE_LEVEL = 32 * 32 + 32  # items a log holds before its root grows a second level
TWO_LEVELS = 32**3 + 32**2 + 32  # ... and a third
# sizes around every leaf/level boundary, where appending changes the shape of the trie
EDGES = (0, 32, 64, 1024, ONE_LEVEL, 2048, 32**3, TWO_LEVELS, TWO_LEVELS + 32 * 32)
BOUNDARIES = sorted({n + d for n in EDGES for d in (-1, 0, 1, 2)} - {-1})


def build_by_chunks(total: int, seed: int) -> tuple[list[PersistentLog[int]], list[int]]:
    """Every version of a log grown to `total` items by appends of 1-70 items (seeded), and the
    list of those items (item i is i * 7 + 3: distinct, so a misplaced item shows)."""
    rng = random.Random(seed)
    log: PersistentLog[int] = PersistentLog()
    versions = [log]
    size = 0
    while size < total:
        k = min(rng.randint(1, 70), total - size)
        log = log.append(*(i * 7 + 3 for i in range(size, size + k)))
        size += k
        versions.append(log)
    return versions, [i * 7 + 3 for i in range(total)]


def assert_matches(log: PersistentLog[int], model: list[int]) -> None:
    """`log` reads exactly like `model` through every read API."""
    n = len(model)
    assert len(log) == n
    assert list(log) == model
    assert list(reversed(log)) == model[::-1]
    assert all(log[i] == model[i] for i in range(n))
    assert all(log[-i] == model[-i] for i in range(1, n + 1))
    for a, b in ((0, n), (1, n - 1), (n // 3, 2 * n // 3), (n - 33, n), (-40, None)):
        assert log[a:b] == tuple(model[a:b])
    assert log[::-97] == tuple(model[::-97])
    assert log == model and log == tuple(model) and log == PersistentLog(model)
    assert hash(log) == hash(tuple(model))
    for bad in (n, n + 1, -n - 1):
        with pytest.raises(IndexError):
            log[bad]


@pytest.mark.parametrize("total", [ONE_LEVEL + 70, TWO_LEVELS + 1100])
def test_a_long_log_reads_like_a_list_at_every_size_it_passed(total: int) -> None:
    """Invariant: a log appended to past 1,056 and past 33,824 items (second and third trie levels)
    equals the list of the same items, and every earlier version still equals its own prefix of
    that list — in particular the versions on each side of a leaf or level boundary."""
    versions, model = build_by_chunks(total, seed=total)
    final = versions[-1]
    assert_matches(final, model)
    sizes = {len(v): v for v in versions}
    for size in [s for s in sizes if any(abs(s - b) <= 40 for b in BOUNDARIES)]:
        version = sizes[size]
        assert_matches(version, model[:size])
        assert version.is_prefix_of(final)
        assert final.is_prefix_of(version) is (size == total)


def test_item_by_item_growth_keeps_every_boundary_version_intact() -> None:
    """Invariant: appending one item at a time through 33,824 + 1,100 items (each boundary crossed
    by a single append), every version kept at a boundary size still reads as its list prefix,
    and forks of it extended with other items do not disturb it or each other."""
    log: PersistentLog[int] = PersistentLog()
    kept: dict[int, PersistentLog[int]] = {0: log}
    model: list[int] = []
    for i in range(TWO_LEVELS + 1100):
        log = log.append(i)
        model.append(i)
        if len(model) in BOUNDARIES:
            kept[len(model)] = log
    assert_matches(log, model)
    for size, version in kept.items():
        assert list(version) == model[:size] and version[-1:] == tuple(model[size - 1 : size])
        left, right = version.append(-1, -2), version.append(-3)
        assert list(left) == [*model[:size], -1, -2] and list(right) == [*model[:size], -3]
        assert len(version) == size and version.is_prefix_of(left) and version.is_prefix_of(right)
        assert not left.is_prefix_of(right) and not right.is_prefix_of(left)
        assert left != right and left[:size] == right[:size]


def test_items_added_in_one_append_or_many_give_equal_logs() -> None:
    """Invariant: the shape of the appends does not matter: one append of n items, n appends of
    one, and the constructor give equal logs with equal hashes, for n across two level boundaries."""
    n = ONE_LEVEL + 1024 + 5
    items = [str(i) for i in range(n)]
    one = PersistentLog[str]().append(*items)
    many: PersistentLog[str] = PersistentLog()
    for item in items:
        many = many.append(item)
    built = PersistentLog(items)
    assert one == many == built and hash(one) == hash(many) == hash(built)
    assert list(one) == list(many) == items


# -- equality and hashing ----------------------------------------------------------------------
def test_logs_that_differ_in_one_item_are_unequal_whatever_they_are_compared_with() -> None:
    base = list(range(100))
    log = PersistentLog(base)
    for i in (0, 31, 32, 63, 64, 99):
        changed = [*base]
        changed[i] = -1
        other = PersistentLog(changed)
        assert log != other and other != log and (log == other) is False
        assert log != changed and log != tuple(changed) and (log == changed) is False
        assert hash(log) != hash(other)  # hashes of int tuples are deterministic
    assert log == base and log == tuple(base) and base == log and tuple(base) == log


def test_logs_of_different_lengths_are_unequal() -> None:
    short, long = PersistentLog([1, 2, 3]), PersistentLog([1, 2, 3, 4])
    assert short != long and long != short
    assert short != [1, 2, 3, 4] and long != [1, 2, 3] and long != (1, 2, 3)
    assert PersistentLog() != PersistentLog([None]) and PersistentLog() == [] and PersistentLog() == ()
    assert PersistentLog([1]) != [] and PersistentLog([None]) != []


def test_forks_sharing_a_root_are_unequal_when_their_tails_differ() -> None:
    """Two forks of one log share its trie root (only their tails differ): equal only when their
    items are."""
    base = PersistentLog(range(70))  # 64 items in the root, 6 in the tail
    left, right, same = base.append("a"), base.append("b"), base.append("a")
    assert left._root is right._root  # the shortcut in `==` sees a shared root
    assert left != right and right != left
    assert left == same and hash(left) == hash(same)
    # forks at a leaf boundary: the tail was pushed into (different copies of) the root
    full = PersistentLog(range(64))
    x, y = full.append(1), full.append(2)
    assert x != y and x == PersistentLog([*range(64), 1])


def test_a_log_is_equal_to_itself_and_to_copies_only() -> None:
    log = PersistentLog(["a", "b"])
    assert (log == log) is True and (log != log) is False
    assert log.__eq__(log) is True
    assert PersistentLog(["a"]) != PersistentLog(["b"])


def test_comparing_with_other_types_is_left_to_them() -> None:
    log = PersistentLog([1, 2])
    assert log.__eq__({1, 2}) is NotImplemented and log.__eq__("12") is NotImplemented
    assert log != {1, 2} and log != "12" and log != 12 and log != None  # noqa: E711


def test_hash_is_the_hash_of_the_items_and_is_cached_per_log() -> None:
    items = (3, 1, 4, 1, 5, 9, 2, 6)
    log = PersistentLog(items)
    assert hash(log) == hash(items) == hash(log)
    assert hash(log.append(5)) == hash((*items, 5))  # a longer log is not served the cached value
    assert {log, PersistentLog(items), PersistentLog(items[:-1])} == {PersistentLog(items), PersistentLog(items[:-1])}


def test_repr_shows_the_items() -> None:
    assert repr(PersistentLog([1, "a"])) == "PersistentLog([1, 'a'])"
    assert repr(PersistentLog()) == "PersistentLog([])"


# -- prefixes ----------------------------------------------------------------------------------
def test_is_prefix_of_holds_exactly_for_equal_leading_items() -> None:
    log = PersistentLog([1, 2, 3])
    assert PersistentLog().is_prefix_of(log) and PersistentLog().is_prefix_of(PersistentLog())
    assert log.is_prefix_of(log) and log.is_prefix_of(PersistentLog([1, 2, 3]))
    assert log.is_prefix_of(log.append(4)) and log.is_prefix_of(PersistentLog([1, 2, 3, 4, 5]))
    assert not log.is_prefix_of(PersistentLog([1, 2])), "a longer log is never a prefix of a shorter one"
    assert not log.is_prefix_of(PersistentLog([1, 2, 4])) and not log.is_prefix_of(PersistentLog([0, 2, 3, 4]))
    assert not log.append(4).is_prefix_of(log) and not log.is_prefix_of(PersistentLog())


def test_a_longer_log_is_never_a_prefix_even_of_its_own_start() -> None:
    """Invariant: `a.is_prefix_of(b)` implies `len(a) <= len(b)`; with equal items it holds both
    ways only for equal logs."""
    long = PersistentLog(range(2000))
    for n in (0, 1, 31, 32, 33, 1024, 1056, 1057, 1999):
        short = PersistentLog(range(n))
        assert short.is_prefix_of(long) and not long.is_prefix_of(short)
    assert long.is_prefix_of(PersistentLog(range(2000))) and PersistentLog(range(2000)).is_prefix_of(long)
