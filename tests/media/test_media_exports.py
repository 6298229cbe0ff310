"""The public surface of pipevault.media: every exported name exists and states its contract."""

from __future__ import annotations

import inspect

import pipevault.media
from pipevault.media import errors


def test_every_exported_name_resolves_and_is_documented() -> None:
    for name in pipevault.media.__all__:
        obj = getattr(pipevault.media, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
            assert obj.__module__.startswith("pipevault.media."), name


def test_media_errors_use_the_media_exit_code_range() -> None:
    classes = [c for c in vars(errors).values()
               if inspect.isclass(c) and issubclass(c, errors.MediaError)]
    assert len(classes) >= 12
    for cls in classes:
        assert 30 <= cls.exit_code <= 39 and cls.code.startswith("media"), cls
        assert cls.hint and cls.__doc__, cls


def test_unsupported_names_operation_and_medium() -> None:
    err = errors.MediaUnsupported("space_filemarks", "D00001", why="no filemarks")
    assert str(err).startswith("D00001 does not support space_filemarks: no filemarks")
    assert err.to_dict()["details"] == {"operation": "space_filemarks", "medium": "D00001"}
