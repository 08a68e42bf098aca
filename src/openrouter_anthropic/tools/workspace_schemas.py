"""The workspace tools as the model sees them: Claude Code's names and input schemas.

The schemas are Claude Code's own (recorded from Claude Code 2.1.x's requests, or from its
SDK's tool input types for the tools it no longer sends by default; LS, MultiEdit and
NotebookRead as earlier versions declared them), so a model trained on Claude Code calls
them as it would there. The descriptions say how this workspace behaves.
"""

from __future__ import annotations

from typing import Any

_STR: dict[str, Any] = {"type": "string"}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def _d(description: str, **schema: Any) -> dict[str, Any]:
    return {"description": description, **schema}


_EDIT_PAIR = {
    "old_string": _d("The text to replace", type="string"),
    "new_string": _d("The text to replace it with (must be different from old_string)",
                     type="string"),
    "replace_all": _d("Replace all occurrences of old_string (default false)",
                      type="boolean", default=False),
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Read": _object({
        "file_path": _d("The absolute path to the file to read", type="string"),
        "offset": _d("The line number to start reading from. Only provide if the file is "
                     "too large to read at once", type="integer", minimum=0),
        "limit": _d("The number of lines to read. Only provide if the file is too large to "
                    "read at once.", type="integer", exclusiveMinimum=0),
        "pages": _d("Page range for PDF files (e.g., \"1-5\", \"3\", \"10-20\"). Only "
                    "applicable to PDF files. Maximum 20 pages per request.", type="string"),
    }, ["file_path"]),
    "Write": _object({
        "file_path": _d("The absolute path to the file to write (must be absolute, not "
                        "relative)", type="string"),
        "content": _d("The content to write to the file", type="string"),
    }, ["file_path", "content"]),
    "Edit": _object({
        "file_path": _d("The absolute path to the file to modify", type="string"),
        **_EDIT_PAIR,
    }, ["file_path", "old_string", "new_string"]),
    "MultiEdit": _object({
        "file_path": _d("The absolute path to the file to modify", type="string"),
        "edits": _d("Array of edit operations to perform sequentially on the file",
                    type="array", minItems=1,
                    items=_object(dict(_EDIT_PAIR), ["old_string", "new_string"])),
    }, ["file_path", "edits"]),
    "Glob": _object({
        "pattern": _d("The glob pattern to match files against", type="string"),
        "path": _d("The directory to search in. If not specified, the current working "
                   "directory will be used. IMPORTANT: Omit this field to use the default "
                   "directory. DO NOT enter \"undefined\" or \"null\" - simply omit it for the "
                   "default behavior. Must be a valid directory path if provided.",
                   type="string"),
    }, ["pattern"]),
    "Grep": _object({
        "pattern": _d("The regular expression pattern to search for in file contents",
                      type="string"),
        "path": _d("File or directory to search in (rg PATH). Defaults to current working "
                   "directory.", type="string"),
        "glob": _d("Glob pattern to filter files (e.g. \"*.js\", \"*.{ts,tsx}\") - maps to rg "
                   "--glob", type="string"),
        "output_mode": _d("Output mode: \"content\" shows matching lines (supports -A/-B/-C "
                          "context, -n line numbers, head_limit), \"files_with_matches\" shows "
                          "file paths (supports head_limit), \"count\" shows match counts "
                          "(supports head_limit). Defaults to \"files_with_matches\".",
                          type="string", enum=["content", "files_with_matches", "count"]),
        "-B": _d("Number of lines to show before each match (rg -B). Requires output_mode: "
                 "\"content\", ignored otherwise.", type="number"),
        "-A": _d("Number of lines to show after each match (rg -A). Requires output_mode: "
                 "\"content\", ignored otherwise.", type="number"),
        "-C": _d("Alias for context.", type="number"),
        "context": _d("Number of lines to show before and after each match (rg -C). "
                      "Requires output_mode: \"content\", ignored otherwise.", type="number"),
        "-n": _d("Show line numbers in output (rg -n). Requires output_mode: \"content\", "
                 "ignored otherwise. Defaults to true.", type="boolean"),
        "-i": _d("Case insensitive search (rg -i)", type="boolean"),
        "-o": _d("Print only the matched (non-empty) parts of each matching line, one match "
                 "per output line (rg -o / --only-matching). Requires output_mode: "
                 "\"content\", ignored otherwise. Defaults to false.", type="boolean"),
        "type": _d("File type to search (rg --type). Common types: js, py, rust, go, java, "
                   "etc. More efficient than include for standard file types.", type="string"),
        "head_limit": _d("Limit output to first N lines/entries, equivalent to \"| head -N\". "
                         "Works across all output modes. Defaults to 250 when unspecified. "
                         "Pass 0 for unlimited.", type="number"),
        "offset": _d("Skip first N lines/entries before applying head_limit, equivalent to "
                     "\"| tail -n +N | head -N\". Works across all output modes. Defaults to "
                     "0.", type="number"),
        "multiline": _d("Enable multiline mode where . matches newlines and patterns can span "
                        "lines (rg -U --multiline-dotall). Default: false.", type="boolean"),
    }, ["pattern"]),
    "LS": _object({
        "path": _d("The absolute path to the directory to list (must be absolute, not "
                   "relative)", type="string"),
        "ignore": _d("List of glob patterns to ignore", type="array", items=_STR),
    }, ["path"]),
    "Bash": _object({
        "command": _d("The command to execute", type="string"),
        "timeout": _d("Optional timeout in milliseconds (max 600000)", type="number"),
        "description": _d("Clear, concise description of what this command does in active "
                          "voice.", type="string"),
        "run_in_background": _d("Set to true to run this command in the background.",
                                type="boolean"),
        "dangerouslyDisableSandbox": _d("Set this to true to dangerously override sandbox "
                                        "mode and run commands without sandboxing.",
                                        type="boolean"),
    }, ["command"]),
    "WebFetch": _object({
        "url": _d("The URL to fetch content from", type="string", format="uri"),
        "prompt": _d("The prompt to run on the fetched content", type="string"),
    }, ["url", "prompt"]),
    "WebSearch": _object({
        "query": _d("The search query to use", type="string", minLength=2),
        "allowed_domains": _d("Only include search results from these domains", type="array",
                              items=_STR),
        "blocked_domains": _d("Never include search results from these domains",
                              type="array", items=_STR),
    }, ["query"]),
    "TodoWrite": _object({
        "todos": _d("The updated todo list", type="array", items=_object({
            "content": {"type": "string", "minLength": 1},
            "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
            "activeForm": {"type": "string", "minLength": 1},
        }, ["content", "status", "activeForm"])),
    }, ["todos"]),
    "NotebookRead": _object({
        "notebook_path": _d("The absolute path to the Jupyter notebook file to read (must be "
                            "absolute, not relative)", type="string"),
        "cell_id": _d("The ID of a specific cell to read. If not provided, all cells will be "
                      "read.", type="string"),
    }, ["notebook_path"]),
    "NotebookEdit": _object({
        "notebook_path": _d("The absolute path to the Jupyter notebook file to edit (must be "
                            "absolute, not relative)", type="string"),
        "cell_id": _d("The ID of the cell to edit. When inserting a new cell, the new cell "
                      "will be inserted after the cell with this ID, or at the beginning if "
                      "not specified.", type="string"),
        "new_source": _d("The new source for the cell", type="string"),
        "cell_type": _d("The type of the cell (code or markdown). If not specified, it "
                        "defaults to the current cell type. If using edit_mode=insert, this is "
                        "required.", type="string", enum=["code", "markdown"]),
        "edit_mode": _d("The type of edit to make (replace, insert, delete). Defaults to "
                        "replace.", type="string", enum=["replace", "insert", "delete"]),
    }, ["notebook_path", "new_source"]),
}

DESCRIPTIONS: dict[str, str] = {
    "Read": "Reads a text file of the workspace. Results use cat -n format (line numbers from "
            "1); up to 2000 lines unless `offset`/`limit` say otherwise. Notebooks are read "
            "as cells.",
    "Write": "Writes a file in the workspace, creating folders as needed and overwriting an "
             "existing file.",
    "Edit": "Replaces `old_string` with `new_string` in a file. `old_string` must match "
            "exactly and be unique unless `replace_all` is true.",
    "MultiEdit": "Applies several Edit operations to one file, in order, all or none.",
    "Glob": "Finds files whose path matches a glob pattern (`**/*.py`), newest first.",
    "Grep": "Searches file contents with a regular expression (ripgrep's options).",
    "LS": "Lists the files and folders of a workspace directory.",
    "Bash": "Runs a bash command in the workspace (a sandbox; only allowed commands, no "
            "network unless the operator enabled it) and returns its output. The working "
            "directory is the workspace root at every call.",
    "WebFetch": "Fetches a public URL and returns its content as text.",
    "WebSearch": "Searches the web; returns result titles and URLs.",
    "TodoWrite": "Replaces the task list of this session (content, status, activeForm).",
    "NotebookRead": "Reads a Jupyter notebook's cells (with their ids and outputs).",
    "NotebookEdit": "Replaces, inserts or deletes one cell of a Jupyter notebook.",
}

TOOL_NAMES: tuple[str, ...] = tuple(SCHEMAS)
