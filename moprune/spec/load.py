"""Reading a spec: YAML in, a validated ``StudySpec`` out, its first error as one line naming key, value and fix.

The only place moprune reads YAML.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import SpecError
from .study import StudySpec

def _format_error(err: dict[str, Any], source: str) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "(top level)"
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent, key = loc.rpartition(".")[0], loc.rpartition(".")[2]
        allowed = _allowed_keys(parent)
        return f"{source}: unknown key {loc!r}; allowed keys{' in ' + parent if parent else ''}: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{source}: {loc} is required"
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{source}: {loc}: {msg}{shown}"


def _allowed_keys(dotted: str) -> list[str]:
    model: type[BaseModel] = StudySpec
    for part in filter(None, dotted.split(".")):
        annotation = model.model_fields[part].annotation
        # an optional section (``DistillSpec | None``) names its keys as a required one does
        options = typing.get_args(annotation) or (annotation,)
        sections = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            return []
        model = sections[0]
    return list(model.model_fields)


def parse_spec(data: Any, *, source: str = "spec") -> StudySpec:
    """Validate an already-parsed mapping; raises SpecError with one line naming key, value and fix."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a study spec is a YAML mapping of keys (got {type(data).__name__})")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_error(exc.errors()[0], source)) from None


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML file written by moprune (an export's config.yaml): this module is the one YAML reader."""
    return yaml.safe_load(Path(path).read_text())


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a YAML study spec."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file; see studies/ for examples") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:  # an empty file, or only comments: running the defaults would surprise, not help
        raise SpecError(f"{path}: the spec is empty (no keys); write at least `name: STUDY`, or start from "
                        "studies/quickstart.yaml")
    return parse_spec(data, source=str(path))
