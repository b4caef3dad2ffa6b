"""What solution notebooks store reads well without a kernel; every notebook carries the same metadata."""
import re
from pathlib import Path

import nbclient
import nbformat
import pytest

from course_lib.authoring import NOTEBOOK_GLOB, execute_solutions
from course_lib.grading import SlicedPollingKernelClient
from course_lib.stored_outputs import KERNELSPEC, WIDGET_STATE, WIDGET_VIEW, freeze_widgets, stored_output_problems

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob(NOTEBOOK_GLOB))
EVERY_NOTEBOOK = SOLUTIONS + sorted((ROOT / "notebooks").glob(NOTEBOOK_GLOB))


def _widget_output(model_id: str, text: str):
    return nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"version_major": 2, "version_minor": 0,
                                                                      "model_id": model_id}, "text/plain": text})


def _notebook_with_widgets():
    """An interact (VBox of a slider and an Output holding a figure), a finished tqdm bar and a bare slider."""
    figure = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 640x480 with 1 Axes>"}}
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
        "slider": {"model_name": "IntSliderModel", "state": {"value": 2}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [figure]}},
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_p", "IPY_MODEL_right"]}},
        "left": {"model_name": "HTMLModel", "state": {"value": "training:\u200769%"}},
        "p": {"model_name": "FloatProgressModel", "state": {"value": 686, "max": 1000}},
        "right": {"model_name": "HTMLModel", "state": {"value": "\u2007686/1000\u2007[00:15&lt;00:07,\u200745.5step/s]"}},
        "lonely": {"model_name": "IntSliderModel", "state": {"value": 1}},
    }
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("interact(...)", outputs=[_widget_output("box", "interactive(children=(IntSlider(")]),
        nbformat.v4.new_code_cell("train(...)", outputs=[_widget_output("bar", "training:   0%|          | 0/1000"),
                                                         nbformat.v4.new_output("stream", name="stderr", text="done\n")]),
        nbformat.v4.new_code_cell("slider", outputs=[_widget_output("lonely", "IntSlider(value=1)")]),
    ]
    notebook.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    return notebook


def test_freeze_widgets_stores_the_figure_and_the_final_progress_line():
    notebook = _notebook_with_widgets()
    assert freeze_widgets(notebook) == 2
    interact, bar, lonely = (cell.outputs for cell in notebook.cells)
    assert [output["data"]["image/png"] for output in interact] == ["iVBORw0KGgo="]
    assert len(bar) == 1 and bar[0]["output_type"] == "stream"
    assert bar[0]["text"] == "training: 69% 686/1000 [00:15<00:07, 45.5step/s]\ndone\n"
    assert WIDGET_VIEW in lonely[0]["data"]                 # nothing to show instead: left for the test to report


def test_problems_name_widget_reprs_dead_bars_and_paths():
    notebook = _notebook_with_widgets()
    notebook.cells.append(nbformat.v4.new_code_cell("print(path)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=f"saved to {Path.home() / 'run.pt'}\n"),
        nbformat.v4.new_output("stream", name="stdout", text=f"{ROOT / 'runs'}\n"),
        nbformat.v4.new_output("stream", name="stderr", text="sampling:   0%|          | 0/50\n")]))
    problems = stored_output_problems(notebook, repository=ROOT)
    assert sum("text repr" in problem for problem in problems) == 3
    assert sum("progress bar stored at 0%" in problem for problem in problems) == 2
    assert sum("absolute path" in problem for problem in problems) == 2
    freeze_widgets(notebook)
    assert [problem[:7] for problem in stored_output_problems(notebook, repository=ROOT)] == ["cell 2:", "cell 3:", "cell 3:"]   # the two stdout streams merge into one


def test_a_finished_bar_and_ordinary_text_are_no_problem():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text="sampling: 100% 50/50 [00:01<00:00, 40.1step/s]\n"),
        nbformat.v4.new_output("stream", name="stdout", text="the square root of 2 is 1.41; runs/model.pt\n")])]
    assert stored_output_problems(notebook, repository=ROOT) == []


@pytest.mark.parametrize("path", SOLUTIONS, ids=[path.name for path in SOLUTIONS])
def test_solution_outputs_read_well_without_a_kernel(path):
    problems = stored_output_problems(nbformat.read(path, as_version=4), repository=ROOT)
    assert not problems, f"{path.name} (re-execute it: python -m course_lib build-notebooks --execute " \
                         f"{path.name[:2]}):\n" + "\n".join(problems)


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=[f"{path.parent.name}/{path.name}" for path in EVERY_NOTEBOOK])
def test_every_notebook_has_the_same_kernel_and_language(path):
    """Otherwise JupyterLab rewrites the metadata on opening and the notebook shows as modified."""
    metadata = nbformat.read(path, as_version=4).metadata
    assert metadata.get("kernelspec") == KERNELSPEC
    assert metadata.get("language_info", {}).get("name") == "python"


RATE = re.compile(r"on_target|confident|share of")      # the rates the notebooks plot


@pytest.mark.parametrize("path", SOLUTIONS, ids=[path.name for path in SOLUTIONS])
def test_rate_axes_start_at_zero(path):
    """A plotted fraction is read against an axis from 0, so that a reader can judge a difference from it."""
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "code" and ".plot(" in cell.source and RATE.search(cell.source):
            assert re.search(r"ylim=\(0|set_ylim\(0|set_ylim\(bottom=0", cell.source), \
                f"{path.name} cell {index} plots a rate without starting its axis at 0"


def test_execute_solutions_waits_for_kernel_messages_in_slices(tmp_path, monkeypatch):
    """nbclient's one long wait for a reply can miss its wakeup (course_lib.grading): the build polls in slices."""
    managers, create = [], nbclient.NotebookClient.create_kernel_manager
    monkeypatch.setattr(nbclient.NotebookClient, "create_kernel_manager",
                        lambda client: managers.append(create(client)) or managers[-1])
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nbformat.write(notebook, tmp_path / "01_tiny.ipynb")
    execute_solutions(tmp_path, ["01"], timeout=120)
    assert [manager.client_factory for manager in managers] == [SlicedPollingKernelClient]
    assert nbformat.read(tmp_path / "01_tiny.ipynb", as_version=4).cells[0].outputs[0]["text"] == "42\n"


def test_execute_solutions_freezes_an_interact_and_a_progress_bar(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(
        "%matplotlib inline\nimport ipywidgets as widgets, matplotlib.pyplot as plt\nfrom tqdm.auto import tqdm\n"
        "for _ in tqdm(range(3), desc='loop'):\n    pass\n"
        "def draw(k=2):\n    plt.plot([0, k])\n    plt.show()\n"
        "widgets.interact(draw, k=widgets.IntSlider(2, 0, 5));")]
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    path = tmp_path / "01_widgets.ipynb"
    nbformat.write(notebook, path)
    execute_solutions(tmp_path, ["01"], timeout=120)
    stored = nbformat.read(path, as_version=4)
    outputs = stored.cells[0].outputs
    assert stored.metadata.kernelspec == KERNELSPEC and "widgets" not in stored.metadata
    assert any(output.get("text", "").startswith("loop: 100% 3/3") for output in outputs)
    assert any("image/png" in output.get("data", {}) for output in outputs)
    assert stored_output_problems(stored, repository=tmp_path) == []
