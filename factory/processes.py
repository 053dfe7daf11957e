"""Whether a process still runs: partial files of dead writers may be removed, a live one's never."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True if process ``pid`` exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
