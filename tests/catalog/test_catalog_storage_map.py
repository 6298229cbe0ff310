"""Management classes and storage map resolution."""

from __future__ import annotations

import pytest

from pipevault.catalog.classes import ManagementClass
from pipevault.catalog.errors import CatalogConflict
from pipevault.catalog.storage_map import StorageMap, StorageRule, glob_to_regex

STANDARD = ManagementClass("STANDARD", "DISKPOOL")
DATABASE = ManagementClass("DATABASE", "TAPEPOOL", versions_exists=7, retain_extra_days=90, compress=False)
SECRET = ManagementClass("SECRET", "DISKPOOL", encrypt=True, dedup=False)
DEDUP = ManagementClass("VMIMAGES", "DEDUPPOOL", dedup=True, versions_exists=1)


def _map() -> StorageMap:
    return StorageMap.build(
        [STANDARD, DATABASE, SECRET, DEDUP],
        [StorageRule("/home/*/.ssh/**", "SECRET"),
         StorageRule("**.db", "DATABASE", filespace="/var"),
         StorageRule("**/images/*.qcow2", "VMIMAGES"),
         StorageRule("/home/**", "STANDARD")],
        default_class="STANDARD", pools=["DISKPOOL", "TAPEPOOL", "DEDUPPOOL"])


@pytest.mark.parametrize(("filespace", "name", "cls", "rule"), [
    ("/home", "/home/alice/.ssh/id_ed25519", "SECRET", 0),
    ("/home", "/home/alice/.ssh/keys/old/id_rsa", "SECRET", 0),
    ("/home", "/home/alice/notes.db", "STANDARD", 3),
    ("/var", "/var/lib/app/main.db", "DATABASE", 1),
    ("/var", "/var/lib/libvirt/images/vm1.qcow2", "VMIMAGES", 2),
    ("/var", "/var/lib/libvirt/images/old/vm1.qcow2", "STANDARD", None),
    ("/srv", "/srv/www/index.html", "STANDARD", None),
])
def test_first_matching_rule_decides_class_and_pool(filespace: str, name: str, cls: str,
                                                    rule: int | None) -> None:
    smap = _map()
    res = smap.resolve(filespace, name)
    assert res.management_class.name == cls
    assert res.pool == res.management_class.destination_pool
    assert res.rule == (None if rule is None else smap.rules[rule])


def test_class_flags_travel_with_the_resolution() -> None:
    res = _map().resolve("/var", "/var/lib/libvirt/images/a.qcow2")
    mc = res.management_class
    assert (mc.dedup, mc.compress, mc.encrypt, mc.versions_exists) == (True, True, False, 1)
    assert res.pool == "DEDUPPOOL"
    assert _map().resolve("/var", "/var/x.db").management_class.retain_extra_days == 90


def test_maps_with_unknown_classes_or_pools_are_refused() -> None:
    with pytest.raises(CatalogConflict, match="'NOPE', which is not defined"):
        StorageMap.build([STANDARD], [StorageRule("**", "NOPE")], default_class="STANDARD")
    with pytest.raises(CatalogConflict, match="not defined"):
        StorageMap.build([STANDARD], [], default_class="OTHER")
    with pytest.raises(CatalogConflict, match="does not exist"):
        StorageMap.build([STANDARD, DATABASE], [], default_class="STANDARD", pools=["DISKPOOL"])
    with pytest.raises(CatalogConflict, match="share a name"):
        StorageMap.build([STANDARD, STANDARD], [], default_class="STANDARD")
    with pytest.raises(CatalogConflict, match="unclosed"):
        StorageMap.build([STANDARD], [StorageRule("/a/[bc", "STANDARD")], default_class="STANDARD")
    with pytest.raises(CatalogConflict, match="no management class"):
        _map().class_named("NOPE")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"name": ""}, "1 to 30"), ({"name": "X" * 31}, "1 to 30"), ({"destination_pool": ""}, "destination"),
    ({"versions_exists": 0}, "at least one"), ({"versions_deleted": -1}, "zero or more"),
    ({"archive_days": -1}, "negative"),
])
def test_classes_are_validated(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"name": "C", "destination_pool": "P"}
    with pytest.raises(CatalogConflict, match=match):
        ManagementClass(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("/a/*", "/a/b", True), ("/a/*", "/a/b/c", False), ("/a/**", "/a/b/c", True),
    ("/a/?.txt", "/a/x.txt", True), ("/a/?.txt", "/a/xy.txt", False),
    ("/a/[bc]", "/a/c", True), ("/a/[!bc]", "/a/c", False), ("/a/[!bc]", "/a/d", True),
    ("/a.b", "/aXb", False), ("*.db", "x.db\n", False),
])
def test_glob_semantics(pattern: str, name: str, matches: bool) -> None:
    assert bool(glob_to_regex(pattern).match(name)) is matches
