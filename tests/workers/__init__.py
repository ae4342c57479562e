"""Tiny adapters that tests start real workers with (``tests.workers.basic:...``)."""

from __future__ import annotations
