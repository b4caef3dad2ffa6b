import io
import time

from course_lib.progress import REDRAW_SECONDS, progress_bar


def test_progress_bars_redraw_at_most_once_per_interval():
    drawn = io.StringIO()
    started = time.monotonic()
    for _ in progress_bar(range(40), file=drawn, desc="waiting"):
        time.sleep(0.025)                       # tqdm's default would redraw about ten times a second
    elapsed = time.monotonic() - started
    redraws = drawn.getvalue().count("\r")
    assert "waiting: 100%" in drawn.getvalue()
    assert 2 <= redraws <= elapsed / REDRAW_SECONDS + 3, (redraws, elapsed)
