"""Progress of long commands: plain periodic lines when the output is not a terminal."""

from __future__ import annotations

import io

from core.progress import PlainBar, bar


def test_a_bar_on_a_file_prints_plain_lines_with_an_estimate():
    out = io.StringIO()
    progress = bar(total=4, desc="unet", every=0.0, file=out)
    assert isinstance(progress, PlainBar)
    for _ in range(3):
        progress.update(1)
    progress.set_postfix(mse="0.0931")
    progress.update(1)
    progress.close()
    progress.close()  # closing twice prints the final line once
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0].startswith("unet 1/4 (25%) ") and "left" in lines[0]
    assert lines[-1].startswith("unet 4/4 (100%) ") and lines[-1].endswith(", mse=0.0931")
    assert "left" not in lines[-1]


def test_plain_lines_are_throttled_and_iterables_are_counted():
    out = io.StringIO()
    items = list(bar(range(1000), desc="encode", every=3600.0, file=out))
    assert items == list(range(1000))
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]  # only the final line
    assert out.getvalue().startswith("encode 1000/1000 (100%)")
