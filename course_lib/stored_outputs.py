"""What an executed solution notebook stores: outputs a reader without a kernel can read.

A notebook read on a website, or opened before running it, shows only its stored outputs. Widgets
are a problem there: without the widget state (which ``execute_solutions`` drops, it is large) an
``interact`` is stored as the text ``interactive(children=(IntSlider(...``, and a tqdm bar as the dead
line ``0%|          | 0/1000``. ``freeze_widgets`` replaces each widget output by what it showed when
the run ended, read from the widget state the kernel left:

* an ``interact`` (any widget holding Output widgets): the figures and text its Output widgets hold;
* a tqdm bar: one line with its final state, e.g. ``training: 69% 686/1000 [00:15<00:07, 45.5step/s]``.

When the notebook runs in a kernel, the cells produce live widgets again. ``stored_output_problems``
lists what must not be stored: a widget output that is only a text repr, a dead progress line, an
absolute path or the user's name. The tests run it over every solution notebook.
"""
from __future__ import annotations

import getpass
import html
import json
import re
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
DEAD_PROGRESS = re.compile(r"(?<![0-9])0%\|")


def _models(notebook) -> dict:
    return notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def _children(state: dict) -> list[str]:
    return [child.removeprefix("IPY_MODEL_") for child in state.get("children", []) if isinstance(child, str)]


def _captured_outputs(model_id: str, models: dict) -> list:
    """The outputs held by the Output widgets inside a widget (depth first), as notebook outputs."""
    import nbformat             # here: the library imports without the notebook tools

    model = models.get(model_id)
    if model is None:
        return []
    if model["model_name"] == "OutputModel":
        return [nbformat.from_dict(output) for output in model["state"].get("outputs", [])]
    return [output for child in _children(model["state"]) for output in _captured_outputs(child, models)]


def _progress_line(model_id: str, models: dict) -> str | None:
    """A tqdm.auto bar (an HBox of HTML, FloatProgress, HTML) as one line of text, or None for other widgets."""
    model = models.get(model_id)
    if model is None or model["model_name"] != "HBoxModel":
        return None
    parts = [models.get(child) for child in _children(model["state"])]
    if not any(part and part["model_name"] == "FloatProgressModel" for part in parts):
        return None
    texts = [html.unescape(part["state"].get("value", "")).replace("\u2007", " ").strip()
             for part in parts if part and part["model_name"] == "HTMLModel"]
    return " ".join(text for text in texts if text) + "\n"


def freeze_widgets(notebook) -> int:
    """Replace every widget output by the static outputs it showed at the end of the run. Returns how many."""
    import nbformat

    models = _models(notebook)
    frozen = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW) if output.get("output_type") == "display_data" else None
            if view is None:
                outputs.append(output)
                continue
            line = _progress_line(view["model_id"], models)
            captured = _captured_outputs(view["model_id"], models)
            if line is not None:
                outputs.append(nbformat.v4.new_output("stream", name="stderr", text=line))
            elif captured:
                outputs.extend(captured)
            else:
                outputs.append(output)
                continue
            frozen += 1
        cell.outputs = _merge_streams(outputs)
    return frozen


def _merge_streams(outputs: list) -> list:
    """Adjacent stream outputs of one name become one, as Jupyter shows them."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] = previous["text"] + output["text"]
        else:
            merged.append(output)
    return merged


def stored_output_problems(notebook, repository: Path | None = None) -> list[str]:
    """Stored outputs a reader must not see, one line each: widget reprs, dead progress bars, paths, user names."""
    forbidden = [re.escape(str(Path.home())) + r"(?![\w.-])", r"/(?:home|Users)/\w", r"[A-Za-z]:\\\\Users\\\\"]
    if repository is not None:
        forbidden.append(re.escape(str(Path(repository).resolve())))
    user = getpass.getuser()
    forbidden += [re.escape(f"/{user}/"), re.escape(f"\\{user}\\")]
    pattern = re.compile("|".join(forbidden))
    problems = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            where = f"cell {index}"
            data = output.get("data", {})
            if WIDGET_VIEW in data and set(data) <= {WIDGET_VIEW, "text/plain"}:
                problems.append(f"{where}: a widget stored only as its text repr {data.get('text/plain', '')[:50]!r}")
            text = json.dumps({key: value for key, value in output.items() if key != "data"}
                              | {"data": {k: v for k, v in data.items() if not k.startswith("image/")}})
            if DEAD_PROGRESS.search(text):
                problems.append(f"{where}: a progress bar stored at 0%")
            found = pattern.search(text)
            if found:
                problems.append(f"{where}: an absolute path or user name {found.group(0)!r}")
    return problems
