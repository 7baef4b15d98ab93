"""An executed phase notebook as an HTML page that reads like results, and reads offline.

The executed `.ipynb` keeps everything (code, parameters cells, outputs); its HTML page beside
it shows what the phase found: the notebook's text and outputs without code or prompts, the
parameters once, as a table at the top (the phase's own section, then the shared ones folded
away) in place of the parameters cells and of the setup cell's display of its sections, and
widgets by their text. Styles and images are inlined and nothing is fetched from a CDN.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from teachable.parameters import Parameters, parameter_table

# JupyterLab's HTML page, less what it would fetch from a CDN: require.js, MathJax, mermaid and
# the widget manager. The reports need none of them: charts are embedded images, tables HTML,
# progress bars text, and the phase notebooks hold no formulas or diagrams.
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# papermill's tags: the notebook's default parameters and the ones the runner injected.
PARAMETER_CELLS = frozenset({"parameters", "injected-parameters"})

# A setup cell's display of parameter sections: `Phase1Parameters(...)`, or a tuple of them.
SECTION_REPR = re.compile(r"^\(?\w+Parameters\(")

CODE = re.compile(r"`([^`]+)`")


def without_widgets(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook with every widget output shown by its text form, and no widget state: an
    HTML page cannot draw a widget without a kernel or the widget manager."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    return notebook


def shows_sections(output: nbformat.NotebookNode) -> bool:
    """Whether an output is only the text of parameter sections (the table shows them)."""
    data = output.get("data", {})
    return set(data) == {"text/plain"} and bool(SECTION_REPR.match(data["text/plain"]))


def tagged_parameters(cell: nbformat.NotebookNode) -> bool:
    """Whether papermill tagged the cell as the notebook's parameters or the injected ones."""
    return bool(PARAMETER_CELLS & set(cell.metadata.get("tags", [])))


def results_only(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without its parameters cells, its displays of parameter sections, and the
    code cells left with no output."""
    kept = []
    for cell in notebook.cells:
        if tagged_parameters(cell):
            continue
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if not shows_sections(output)]
            if not cell.outputs:
                continue
        kept.append(cell)
    notebook.cells = kept
    return notebook


def section_rows(parameters: Parameters, section: str) -> list[tuple[str, str, str]]:
    """The keys of one section (its nested sections included): each with its value and what
    it means."""
    return [
        (row["key"], row["value"], row["description"])
        for row in parameter_table(parameters)
        if row["section"] == section or row["section"].startswith(f"{section}.")
    ]


def with_code(text: str) -> str:
    """Markdown's `code` spans of `text` as HTML code."""
    return CODE.sub(r"<code>\1</code>", text)


def html_table(rows: Sequence[tuple[str, str, str]]) -> str:
    """Parameter rows as one HTML table without blank lines (markdown keeps it whole), the
    `code` spans of their meanings as code."""
    body = "".join(
        f"<tr><td><code>{escape(key)}</code></td><td>{escape(value)}</td>"
        f"<td>{with_code(escape(meaning))}</td></tr>"
        for key, value, meaning in rows
    )
    return f"<table><tr><th>parameter</th><th>value</th><th>meaning</th></tr>{body}</table>"


def parameters_cell(
    parameters: Parameters, section: str, shared: Sequence[str]
) -> nbformat.NotebookNode:
    """A markdown cell with the phase's section as a table, and the shared sections' tables
    folded beneath it."""
    own = section_rows(parameters, section)
    source = f"## Parameters\n\n`{section}` of `{parameters.source}`:\n\n"
    source += html_table(own) if own else "No section of its own."
    if shared:
        folded = "".join(
            f"<h4>{name}</h4>{html_table(section_rows(parameters, name))}" for name in shared
        )
        summary = f"Shared sections: {', '.join(shared)}"
        source += f"\n\n<details><summary>{summary}</summary>{folded}</details>"
    return nbformat.v4.new_markdown_cell(source)


def with_parameters(
    notebook: nbformat.NotebookNode, cell: nbformat.NotebookNode
) -> nbformat.NotebookNode:
    """The notebook with `cell` where its parameters cells begin (else first)."""
    place = next((i for i, each in enumerate(notebook.cells) if tagged_parameters(each)), 0)
    notebook.cells.insert(place, cell)
    return notebook


def export_html(
    report: Path, parameters: Parameters, section: str, shared: Sequence[str] = ()
) -> Path:
    """Write an executed notebook as one HTML page beside it that reads like results and
    offline: no code, the parameters (`section` of `parameters`, then the `shared` sections)
    once as a table, styles and images inlined, no script from a CDN, widgets as their text,
    progress bars at their last state."""
    exporter = HTMLExporter(
        template_name="lab",
        template_file="offline.html.j2",
        extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
        embed_images=True,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(enabled=True), enabled=True)
    notebook = without_widgets(nbformat.read(report, as_version=4))
    notebook = with_parameters(notebook, parameters_cell(parameters, section, shared))
    notebook = results_only(notebook)
    body, _ = exporter.from_notebook_node(notebook)
    html = report.with_suffix(".html")
    html.write_text(body)
    return html
