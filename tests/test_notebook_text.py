"""What every notebook tells a student about itself: its time (as the README says), the glossary, its sources."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def text(path):
    return "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)


def readme_minutes():
    rows = re.findall(r"^\| (\d\d) \| `\d\d_\w+` \|.*\| (\d+) min \|$", (ROOT / "README.md").read_text(), re.M)
    return {number: int(minutes) for number, minutes in rows}


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name[:2])
def test_time_estimate_agrees_with_the_readme(path):
    stated = re.search(r"\*\*Time\.\*\* About (\d+) minutes", nbformat.read(path, as_version=4).cells[0].source)
    assert stated, f"{path.name}: the title cell states no '**Time.** About N minutes'"
    assert readme_minutes().get(path.name[:2]) == int(stated.group(1)), \
        f"{path.name} says {stated.group(1)} min, the README's course map {readme_minutes().get(path.name[:2])}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name[:2])
def test_links_the_glossary_from_its_title_cell(path):
    title = nbformat.read(path, as_version=4).cells[0].source
    assert "](../GLOSSARY.md)" in title
    assert (ROOT / "GLOSSARY.md").is_file()


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name[:2])
def test_cites_papers_not_the_course_source_documents(path):
    """Students do not have the specifications the course was written from: no 'seed 000' in a notebook."""
    assert not re.search(r"\bseeds? 00\d|\bthe seed's\b|\bthe seed (writes|uses|claims|mentions)", text(path), re.I)
