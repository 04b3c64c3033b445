"""JUnit XML reports (``--junit FILE``), the format CI test reporters read.

One ``<testcase>`` per check: a model, or a KVM variant on a scenario (classname
``kvmsim.VARIANT``, name ``VARIANT / SCENARIO``, in ``check`` and ``study`` alike). Its outcome:

* passed: every property holds and the search was exhaustive;
* ``<failure>``: a property is violated (a crash inside a model's step included); the message
  names the properties, the body is the report ``kvmsim check`` prints, timelines included;
* ``<skipped>``: the properties held, but only within a bound (``--max-depth``, ``--max-states``,
  random runs), so nothing was proved;
* ``<error>``: the check did not finish (interrupted) or could not run.

The document follows the shape of the common JUnit schema (Jenkins' junit.xsd, which GitHub
and GitLab reporters accept): ``<testsuites>`` around one ``<testsuite>`` whose ``tests``,
``failures``, ``errors`` and ``skipped`` counts match its test cases, and ``time`` in seconds.
"""

from __future__ import annotations

import os
import platform
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..atomic import write_text

PASSED, FAILURE, SKIPPED, ERROR = "passed", "failure", "skipped", "error"

# Characters XML 1.0 cannot carry at all (a model's labels and values could hold them).
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Case:
    """One test case: what was checked and how it ended."""

    classname: str
    name: str
    seconds: float
    outcome: str  # PASSED | FAILURE | SKIPPED | ERROR
    message: str = ""  # one line: the verdict, the violated properties, the error
    kind: str = ""  # failure/error type: the violation's kind, or why it did not finish
    text: str = ""  # the failure's or error's body: the report, timelines included
    output: str = ""  # <system-out>: the report of a check that passed or was skipped


def outcome_of(violated: bool, exhaustive: bool, interrupted: bool) -> str:
    """A check's test outcome from its result (see the module docstring)."""
    if violated:
        return FAILURE
    if interrupted:
        return ERROR
    return PASSED if exhaustive else SKIPPED


def render(suite: str, cases: Sequence[Case], timestamp: datetime | None = None) -> str:
    """The JUnit XML document for cases, as one testsuite called suite."""
    counts = {o: sum(1 for c in cases if c.outcome == o) for o in (FAILURE, ERROR, SKIPPED)}
    total = f"{sum(c.seconds for c in cases):.3f}"
    attrs = {
        "tests": str(len(cases)),
        "failures": str(counts[FAILURE]),
        "errors": str(counts[ERROR]),
        "skipped": str(counts[SKIPPED]),
        "time": total,
    }
    root = ET.Element("testsuites", {"name": suite, **attrs})
    when = (timestamp or datetime.now(UTC)).replace(microsecond=0)
    ts = ET.SubElement(
        root,
        "testsuite",
        {
            "name": suite,
            **attrs,
            "timestamp": when.isoformat().replace("+00:00", ""),
            "hostname": _clean(platform.node() or "localhost"),
        },
    )
    for case in cases:
        el = ET.SubElement(
            ts,
            "testcase",
            {
                "classname": _clean(case.classname),
                "name": _clean(case.name),
                "time": f"{case.seconds:.3f}",
            },
        )
        if case.outcome in (FAILURE, ERROR):
            body = ET.SubElement(
                el, case.outcome, {"message": _clean(case.message), "type": _clean(case.kind)}
            )
            body.text = _clean(case.text)
        elif case.outcome == SKIPPED:
            ET.SubElement(el, "skipped", {"message": _clean(case.message)})
        if case.output:
            ET.SubElement(el, "system-out").text = _clean(case.output)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: str | os.PathLike[str], suite: str, cases: Sequence[Case]) -> None:
    """Write the report atomically (kvmsim.atomic)."""
    write_text(path, render(suite, cases))


def _clean(text: str) -> str:
    return _ILLEGAL.sub("\N{REPLACEMENT CHARACTER}", text)
