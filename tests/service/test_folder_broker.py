"""The embedded broker (service.folder_broker): a message is visible to readers only once it is
whole, and an unreadable one is dropped instead of stopping the worker."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from service import folder_broker


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Any]:
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    with Connection("filesystem://", transport=folder_broker.TRANSPORT, transport_options=options) as conn:
        yield conn.default_channel


def test_a_message_is_visible_only_once_written_whole(channel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace
    seen_before: list[str] = []

    def replace(src: str, dst: str) -> None:
        # The file is written but not yet renamed: a reader listing the folder now must not take it
        # (kombu's own _put made it visible empty, and the reader's JSON decoding ended the worker).
        assert Path(src).read_bytes().startswith(b"{")
        try:
            channel._get("grading")
        except Empty:
            seen_before.append("nothing")
        real_replace(src, dst)

    monkeypatch.setattr(folder_broker.os, "replace", replace)
    channel._put("grading", {"body": "submission 7"})
    assert seen_before == ["nothing"]
    assert channel._get("grading") == {"body": "submission 7"}
    with pytest.raises(Empty):
        channel._get("grading")


def test_an_unreadable_message_is_dropped_and_the_next_one_delivered(
    channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    folder = Path(channel.data_folder_in)
    # Named to sort first (kombu takes the oldest name first): what a reader took mid-write.
    (folder / "0_empty.grading.msg").write_bytes(b"")
    channel._put("grading", {"body": "submission 8"})
    with caplog.at_level(logging.WARNING, logger="service.folder_broker"), pytest.raises(Empty):
        channel._get("grading")
    assert "dropped an unreadable message" in caplog.text
    assert channel._get("grading") == {"body": "submission 8"}
