"""The embedded default's broker: kombu's filesystem transport, with messages written atomically.

kombu's own `_put` creates the message file under its final name and then writes it, so a reader that
lists the folder in between takes an empty file; its `_get` then raises JSONDecodeError, which Celery's
consumer treats as unrecoverable: the embedded worker stopped for good, and uploads stayed `queued`
(seen once in ~40 minutes of steady uploads). Here a message is written under a name no reader takes
and renamed into place, and a message that still cannot be read (another writer's, a full disk) is
logged and dropped instead of ending the worker: Postgres holds every submission, and the sweeper
sends a queued one again.
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

log = logging.getLogger(__name__)

TRANSPORT = "service.folder_broker:Transport"  # Celery's broker_transport for filesystem:// URLs


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: `_get` takes only names whose part after the first dot is "<queue>.msg".
        part = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(part, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(part, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        try:
            return super()._get(queue)
        except ValueError as exc:  # JSONDecodeError: an empty or cut-off file, already taken off the queue
            log.warning(
                "dropped an unreadable message from queue %s (%s); the sweeper re-sends its submission",
                queue,
                exc,
            )
            raise filesystem.Empty() from None


class Transport(filesystem.Transport):
    Channel = Channel
