"""The machine-readable result: a versioned JSON document.

``{"format": "kvmsim-result/1", "model": ..., "verdict": ..., "violated": [...],
"violations": [{"property", "kind", "message", "description", "length", "trace": {"steps":
[...], "loop_start", ...}}], "stats": {...}, ...}``. A reader should check ``format``; fields
are only ever added within one version.
"""

from __future__ import annotations

import json
from typing import Any

from ..engine import Model, Options, Result

FORMAT = "kvmsim-result/1"


def options_dict(options: Options) -> dict[str, Any]:
    return {
        "mode": options.mode,
        "max_depth": options.max_depth,
        "max_states": options.max_states,
        "runs": options.runs if options.mode in ("random", "swarm") else None,
        "seed": options.seed if options.mode in ("random", "swarm") else None,
        "stop_at_first": options.stop_at_first,
        "liveness": options.liveness,
        "workers": options.workers,
        "backend": options.backend,
        **({"time_budget": options.time_budget} if options.time_budget is not None else {}),
    }


def result_document(
    result: Result, model: Model | None = None, options: Options | None = None
) -> dict[str, Any]:
    """The result as a JSON-ready dict, with the model's description and expectation."""
    doc: dict[str, Any] = {"format": FORMAT}
    doc.update(result.as_dict())
    if model is not None:
        doc["description"] = model.description
        doc["expect"] = model.expect
    if options is not None:
        doc["options"] = options_dict(options)
    # Each step's source location (file:line of its yield, or of the failure).
    for vdoc, violation in zip(doc["violations"], result.violations):
        if violation.trace is None or vdoc.get("trace") is None:
            continue
        for sdoc, step in zip(vdoc["trace"]["steps"], violation.trace.steps):
            sdoc.setdefault("line", step.line)
    return doc


def dumps(doc: Any) -> str:
    """Serialise a document; values JSON cannot hold are written as their repr."""
    return json.dumps(doc, indent=2, ensure_ascii=False, default=repr)
