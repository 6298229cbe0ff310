"""The storage map: ordered rules binding every object to a management class.

:class:`StorageMap` resolves an object (its file space and name) to its
:class:`~pipevault.catalog.classes.ManagementClass` and destination pool; the first rule
whose patterns match wins, the default class takes the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipevault.catalog.classes import ManagementClass
from pipevault.catalog.errors import CatalogConflict


@dataclass(frozen=True)
class StorageRule:
    """Objects whose file space and name match these patterns are bound to ``class_name``.

    Patterns are globs over ``/``-separated names: ``*`` matches within one path component,
    ``**`` across components, ``?`` one character, ``[abc]`` one of a set.
    """

    pattern: str
    class_name: str
    filespace: str = "**"


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a storage-map glob (see :class:`StorageRule`) to an anchored regular expression.

    Raises:
        CatalogConflict: an unclosed ``[`` set.
    """
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise CatalogConflict(f"pattern {pattern!r} has an unclosed '['")
            body = pattern[i + 1:end]
            neg = body.startswith("!")
            out.append("[" + ("^" if neg else "") + re.escape(body[1:] if neg else body) + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@dataclass(frozen=True)
class Resolution:
    """What the storage map decided for one object: its class, its pool, and the rule that
    matched (None when the default class applied)."""

    management_class: ManagementClass
    pool: str
    rule: StorageRule | None


@dataclass(frozen=True)
class StorageMap:
    """Ordered rules binding objects to management classes; the first matching rule wins.

    Args:
        classes: every management class the rules may name.
        rules: checked in order.
        default_class: the class of objects no rule matches.
        pools: if given, the pools that exist; every class's destination must be one of them.

    Raises:
        CatalogConflict: a rule or the default names an unknown class, a destination pool does not
            exist, two classes share a name, or a pattern is malformed.
    """

    classes: tuple[ManagementClass, ...]
    rules: tuple[StorageRule, ...]
    default_class: str
    pools: tuple[str, ...] | None = None
    _compiled: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = field(
        init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        by_name = {c.name: c for c in self.classes}
        if len(by_name) != len(self.classes):
            raise CatalogConflict("two management classes share a name")
        for name in [self.default_class, *(r.class_name for r in self.rules)]:
            if name not in by_name:
                raise CatalogConflict(f"storage map names management class {name!r}, which is not defined")
        if self.pools is not None:
            for c in self.classes:
                if c.destination_pool not in self.pools:
                    raise CatalogConflict(f"class {c.name} sends data to pool {c.destination_pool!r}, "
                                    "which does not exist")
        compiled = tuple((glob_to_regex(r.filespace), glob_to_regex(r.pattern)) for r in self.rules)
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def build(cls, classes: Iterable[ManagementClass], rules: Iterable[StorageRule], default_class: str,
              pools: Iterable[str] | None = None) -> StorageMap:
        """A map from any iterables (converted to tuples)."""
        return cls(tuple(classes), tuple(rules), default_class, None if pools is None else tuple(pools))

    def class_named(self, name: str) -> ManagementClass:
        """The class called ``name``.

        Raises:
            CatalogConflict: no such class.
        """
        for c in self.classes:
            if c.name == name:
                return c
        raise CatalogConflict(f"no management class {name!r}")

    def resolve(self, filespace: str, name: str) -> Resolution:
        """The class and pool for object ``name`` in ``filespace``."""
        for rule, (fs_re, name_re) in zip(self.rules, self._compiled, strict=True):
            if fs_re.match(filespace) and name_re.match(name):
                mc = self.class_named(rule.class_name)
                return Resolution(mc, mc.destination_pool, rule)
        mc = self.class_named(self.default_class)
        return Resolution(mc, mc.destination_pool, None)
