"""What the app remembers between runs: every key in one enum, read and written through :class:`Settings`.

The keys' values are the names stored in the user's settings (QSettings), so renaming a
member is free but changing a value forgets what users had saved.
"""

from __future__ import annotations

import enum
from pathlib import Path

from PySide6.QtCore import QSettings

RECENT_LIMIT = 10


class Key(enum.Enum):
    GEOMETRY = "geometry"  # the main window's size and place
    WINDOW_STATE = "window_state"  # its docks and toolbar
    LAST_FOLDER = "last_folder"  # where the file dialogs start
    RECENT = "recent"  # images and folders opened lately, newest first
    PIXEL_SIZE = "pixel_size"  # µm per pixel; 0 for unknown


class Settings:
    """Typed access to the app's QSettings (by default the user's own, "Cerber/Cerber")."""

    def __init__(self, store: QSettings | None = None):
        self.store = store if store is not None else QSettings("Cerber", "Cerber")

    @classmethod
    def in_file(cls, path: Path | str) -> Settings:
        """Settings kept in an INI file of their own (tests, self-test, screenshots: the user's stay untouched)."""
        return cls(QSettings(str(path), QSettings.IniFormat))

    def value(self, key: Key, default=None):
        return self.store.value(key.value, default)

    def set_value(self, key: Key, value) -> None:
        self.store.setValue(key.value, value)

    def last_folder(self) -> Path:
        return Path(str(self.value(Key.LAST_FOLDER, str(Path.home()))))

    def pixel_size(self) -> float:
        return float(self.value(Key.PIXEL_SIZE, 0.0))

    def recent(self) -> list[str]:
        value = self.value(Key.RECENT, [])
        # QSettings gives a plain string back for a one-element list in some formats.
        return [value] if isinstance(value, str) else list(value or [])

    def remember_recent(self, paths: list[Path]) -> None:
        """Put ``paths`` first on the recent list (once each), keeping :data:`RECENT_LIMIT` entries."""
        new = [str(p.resolve()) for p in paths]
        self.set_value(Key.RECENT, (new + [p for p in self.recent() if p not in new])[:RECENT_LIMIT])

    def forget_recent(self, path: str) -> None:
        self.set_value(Key.RECENT, [p for p in self.recent() if p != path])

    def clear_recent(self) -> None:
        self.set_value(Key.RECENT, [])
