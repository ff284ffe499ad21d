"""What the function logs, captured: Powertools' JSON lines and any library's records."""

from __future__ import annotations

import io
import json
import logging
from typing import Any


class LogCapture:
    """Everything the function logs: Powertools' JSON lines and any library logger."""

    def __init__(self, app_module: Any) -> None:
        self._stream = io.StringIO()
        self._powertools = app_module.logger
        self._handler = self._powertools.registered_handler
        self._old_stream = self._handler.setStream(self._stream)
        self._old_level = self._powertools.log_level
        self._root = logging.StreamHandler(self._stream)
        self._root.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(self._root)

    def debug(self) -> None:
        self._powertools.setLevel("DEBUG")
        logging.getLogger().setLevel(logging.DEBUG)

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def close(self) -> None:
        self._handler.setStream(self._old_stream)
        self._powertools.setLevel(self._old_level)
        logging.getLogger().removeHandler(self._root)
        logging.getLogger().setLevel(logging.WARNING)
