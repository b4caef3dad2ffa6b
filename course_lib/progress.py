"""The course's progress bars: tqdm.auto (a widget in Jupyter, a text line in a terminal), redrawn twice a second.

tqdm redraws up to ten times a second. In JupyterLab each redraw is a widget message that the server relays and the
browser lays out again: running notebook 04 in headless Chromium, the browser's CPU time fell by a third (33 s to
22 s) with fewer redraws, CPU that a 2-core laptop takes from the kernel. Twice a second still reads as live.
"""
from __future__ import annotations

REDRAW_SECONDS = 0.5


def progress_bar(iterable=None, **options):
    """``tqdm.auto.tqdm(iterable, **options)`` redrawn at most every ``REDRAW_SECONDS``."""
    from tqdm.auto import tqdm      # imported here: only runs need it, not every import of the library

    return tqdm(iterable, mininterval=REDRAW_SECONDS, **options)
