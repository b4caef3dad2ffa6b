"""`python -m course_lib procedural`: the files hold what generate returns; bad input writes nothing."""
import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from course_lib import procedural
from course_lib.__main__ import main


def run(argv):
    try:
        return main(["procedural", *argv])
    except SystemExit as exit:   # argparse's own errors (unknown choice, not an int)
        return exit.code


def test_files_hold_what_generate_returns(tmp_path, capsys):
    out = tmp_path / "new" / "dir"
    code = run(["--height", "40", "--width", "56", "--channels", "3", "--steps", "50", "--seed", "3",
                "--easing", "smoothstep", "--noise-schedule", "linear", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = procedural.generate(40, 56, 3, 50, 3, "smoothstep", "linear")

    with open(out / "stats.csv", newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == ["t", "mean", "std", "min", "max", "noise_level"]
    assert [int(row["t"]) for row in rows] == list(range(50, -1, -5))
    for row, record in zip(rows, result.stats):
        assert {key: float(value) for key, value in row.items()} == record   # full precision, exactly

    assert np.array_equal(np.asarray(Image.open(out / "final.png")), procedural.to_uint8(result.image))
    strip = np.asarray(Image.open(out / "steps.png"))
    assert strip.shape == (40, 6 * 56 + 5 * 2, 3)
    assert np.array_equal(strip, procedural.to_uint8(procedural.steps_strip(result.steps)))
    assert sorted(path.name for path in out.iterdir()) == ["final.png", "stats.csv", "steps.png"]  # no temp files
    assert "final.png" in capsys.readouterr().out


def test_one_channel_is_a_grey_png(tmp_path):
    assert run(["--height", "9", "--width", "7", "--channels", "1", "--steps", "10", "--out", str(tmp_path)]) == 0
    grey = Image.open(tmp_path / "final.png")
    assert grey.mode == "L"
    assert np.array_equal(np.asarray(grey), procedural.to_uint8(procedural.generate(9, 7, 1, 10).image)[..., 0])


def test_an_existing_directory_is_updated(tmp_path):
    assert run(["--height", "8", "--width", "8", "--seed", "1", "--out", str(tmp_path)]) == 0
    assert run(["--height", "8", "--width", "8", "--seed", "2", "--out", str(tmp_path)]) == 0
    expected = procedural.to_uint8(procedural.generate(8, 8, seed=2).image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "final.png")), expected)


@pytest.mark.parametrize("argv, words", [
    (["--height", "0"], "height must be >= 1"),
    (["--width", "-3"], "width must be >= 1"),
    (["--height", "1.5"], "invalid int value"),
    (["--channels", "0"], "channels must be >= 1"),
    (["--channels", "5"], "--channels must be 1 to 4"),
    (["--steps", "0"], "must be >= 1"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--easing", "bouncy"], "invalid choice: 'bouncy'"),
    (["--noise-schedule", "gaussian"], "invalid choice: 'gaussian'"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, words):
    out = tmp_path / "out"
    assert run([*argv, "--out", str(out)]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_out_must_not_be_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert run(["--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_help_as_a_command():
    done = subprocess.run([sys.executable, "-m", "course_lib", "procedural", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--noise-schedule" in done.stdout and "stats.csv" in done.stdout
