"""Jupyter notebooks for the workspace tools: NotebookRead (and Read on .ipynb) renders
cells with their ids and outputs; NotebookEdit replaces, inserts or deletes one cell.

A cell is named by its `id` (nbformat 4.5+), or by `cell-N` (its 0-based index) for
notebooks without ids, as Claude Code does.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .paths import ToolError, WorkspaceRoot

_INDEX = re.compile(r"(?:cell-)?(\d+)\Z")
_MAX_OUTPUT_CHARS = 10_000


def render(root: WorkspaceRoot, path: Path, cell_id: str | None, max_bytes: int) -> str:
    notebook = _load(root, path, max_bytes)
    cells = _cells(notebook)
    if cell_id is not None:
        index = _find(cells, cell_id)
        return _render_cell(cells[index], index)
    if not cells:
        return f"(the notebook {path} has no cells)"
    return "\n".join(_render_cell(cell, i) for i, cell in enumerate(cells))


def read_tool(root: WorkspaceRoot, tool_input: Mapping[str, Any], max_bytes: int) -> str:
    path = root.resolve(_required(tool_input, "notebook_path"))
    cell_id = tool_input.get("cell_id")
    if cell_id is not None and not isinstance(cell_id, str):
        raise ToolError("`cell_id` must be a string")
    return render(root, path, cell_id, max_bytes)


def edit_tool(root: WorkspaceRoot, tool_input: Mapping[str, Any], max_bytes: int) -> str:
    path = root.resolve(_required(tool_input, "notebook_path"))
    if path.suffix != ".ipynb":
        raise ToolError("File must be a Jupyter notebook (.ipynb file).")
    source = tool_input.get("new_source")
    mode = tool_input.get("edit_mode") or "replace"
    cell_type = tool_input.get("cell_type")
    cell_id = tool_input.get("cell_id")
    if not isinstance(source, str):
        raise ToolError("`new_source` must be a string")
    if mode not in ("replace", "insert", "delete"):
        raise ToolError("`edit_mode` must be replace, insert or delete")
    if cell_type not in (None, "code", "markdown"):
        raise ToolError("`cell_type` must be code or markdown")
    if cell_id is not None and not isinstance(cell_id, str):
        raise ToolError("`cell_id` must be a string")
    notebook = _load(root, path, max_bytes)
    cells = _cells(notebook)
    if mode == "insert":
        if cell_type is None:
            raise ToolError("`cell_type` is required when inserting a cell")
        at = 0 if cell_id is None else _find(cells, cell_id) + 1
        cell = _new_cell(notebook, cell_type, source)
        cells.insert(at, cell)
        done = f"Inserted a {cell_type} cell at position {at}"
    else:
        if cell_id is None:
            raise ToolError(f"`cell_id` is required to {mode} a cell")
        at = _find(cells, cell_id)
        if mode == "delete":
            del cells[at]
            done = f"Deleted cell {cell_id}"
        else:
            _replace(cells[at], source, cell_type)
            done = f"Updated cell {cell_id}"
    root.write_bytes(path, (json.dumps(notebook, indent=1, ensure_ascii=False) + "\n").encode())
    return f"{done} in {path}"


def _load(root: WorkspaceRoot, path: Path, max_bytes: int) -> dict[str, Any]:
    try:
        notebook = json.loads(root.read_bytes(path, max_bytes))
    except ValueError as exc:
        raise ToolError(f"{path} is not a valid notebook (JSON): {exc}") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ToolError(f"{path} is not a Jupyter notebook (no cells list)")
    return notebook


def _cells(notebook: dict[str, Any]) -> list[dict[str, Any]]:
    cells = notebook["cells"]
    if not all(isinstance(cell, dict) for cell in cells):
        raise ToolError("the notebook has a malformed cell")
    return cells  # type: ignore[no-any-return]


def _find(cells: list[dict[str, Any]], cell_id: str) -> int:
    for i, cell in enumerate(cells):
        if cell.get("id") == cell_id:
            return i
    match = _INDEX.match(cell_id)
    if match and int(match.group(1)) < len(cells):
        return int(match.group(1))
    raise ToolError(f"Cell with ID \"{cell_id}\" not found in notebook.")


def _render_cell(cell: Mapping[str, Any], index: int) -> str:
    cell_id = cell.get("id") or f"cell-{index}"
    kind = cell.get("cell_type", "code")
    parts = [f'<cell id="{cell_id}">', f"<cell_type>{kind}</cell_type>" if kind != "code"
             else "", _joined(cell.get("source")), f'</cell id="{cell_id}">']
    outputs = [_output_text(o) for o in cell.get("outputs") or [] if isinstance(o, Mapping)]
    outputs = [o for o in outputs if o]
    if outputs:
        text = "\n".join(outputs)
        if len(text) > _MAX_OUTPUT_CHARS:
            text = text[:_MAX_OUTPUT_CHARS] + "\n... (output truncated)"
        parts.append(f"<outputs>\n{text}\n</outputs>")
    return "\n".join(part for part in parts if part)


def _output_text(output: Mapping[str, Any]) -> str:
    if output.get("output_type") == "stream":
        return _joined(output.get("text"))
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    data = output.get("data")
    if isinstance(data, Mapping):
        if "text/plain" in data:
            return _joined(data["text/plain"])
        kinds = ", ".join(sorted(str(k) for k in data))
        return f"[{kinds} output]"
    return ""


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return str(value or "")


def _new_cell(notebook: Mapping[str, Any], cell_type: str, source: str) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": cell_type, "metadata": {}, "source": source}
    if (notebook.get("nbformat"), notebook.get("nbformat_minor", 0)) >= (4, 5):
        cell["id"] = secrets.token_hex(4)
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _replace(cell: dict[str, Any], source: str, cell_type: str | None) -> None:
    cell["source"] = source
    if cell_type is not None and cell_type != cell.get("cell_type"):
        cell["cell_type"] = cell_type
    if cell.get("cell_type") == "code":
        cell["execution_count"] = None
        cell["outputs"] = []
    else:
        cell.pop("execution_count", None)
        cell.pop("outputs", None)


def _required(tool_input: Mapping[str, Any], key: str) -> str:
    value = tool_input.get(key)
    if not isinstance(value, str) or not value:
        raise ToolError(f"`{key}` is required")
    return value
