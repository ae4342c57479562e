"""A test adapter module whose import ends the process at once, without a word
(as a crash in an extension module's import would)."""

from __future__ import annotations

import os

os._exit(3)
