"""The HTML report: one self-contained file (inline CSS, JavaScript and SVG; nothing fetched).

Each counterexample is drawn as a sequence diagram: one lane per CPU (a step's lane), one
row per step with the kernel function it ran in and its label, and an arrow from the acting
lane to every other lane whose state the step changed (a request or an IPI sent to another
vCPU, a TLB flushed on another CPU: a variable ``vcpu1.*`` belongs to the lane of actor
``vcpu1``, ``cpu1.*`` to lane ``CPU1``). Clicking a step (or Enter on it, arrow keys to
move) shows what it changed, before and after, with the unchanged variables behind a
toggle. The violated step is marked. Lane headers stay on screen while the diagram scrolls;
text is wrapped to the lane's width (a monospace font, so widths are known here), so rows
never overlap however long the trace.

``write_html(result, model, path)`` writes the report of one check; ``write_html_sections``
puts several checks (e.g. one per scenario) in one page.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..atomic import write_text
from ..engine import Model, Result, Violation
from ..engine.trace import Trace, TraceStep
from .text import meaning, stats_line
from .values import CompactStyle, ValueStyle

# Layout (pixels). Text is monospace; CHAR_W is a generous advance width for 12px.
FONT_PX = 12
CHAR_W = 7.8
LINE_H = 16
NUM_W = 48
LANE_W = 330
PAD = 8
ROW_GAP = 8
LOOP_H = 26
LABEL_LINES = 2  # an arrow's label is at most this many lines (the detail panel has all)
CHARS = int((LANE_W - 2 * PAD - 8) / CHAR_W)  # characters per line inside a lane
MAX_LABEL_LINES = 6  # a step's own label is cut after this many lines (full in the panel)

LANE_COLOURS = ("#e8f0fe", "#e6f4ea", "#fef7e0", "#fce8e6", "#f3e8fd", "#e4f7fb", "#f1f3f4")
LANE_STROKES = ("#1a73e8", "#188038", "#b06000", "#c5221f", "#8430ce", "#007b83", "#5f6368")


@dataclass
class Section:
    """One check in a report: its result and how to draw it."""

    result: Result
    model: Model | None = None
    lanes: Sequence[str] = ()  # the order of the first lanes (e.g. CPU0, CPU1, host0)
    style: ValueStyle | None = None  # how values are written (default: repr)
    tokens: Mapping[str, str] = field(default_factory=dict)  # property -> replay token
    actors: Sequence[tuple[str, str]] = ()  # (actor, lane); default: the model's actors
    notes: Sequence[str] = ()


def write_html(
    result: Result,
    model: Model | None,
    path: str | os.PathLike[str],
    *,
    lanes: Sequence[str] = (),
    style: ValueStyle | None = None,
    tokens: Mapping[str, str] | None = None,
    actors: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
) -> None:
    """Write the report of one check (every counterexample of result) to path."""
    section = Section(result, model, lanes, style, dict(tokens or {}), actors, notes)
    write_html_sections([section], path)


def write_html_sections(
    sections: Sequence[Section], path: str | os.PathLike[str], title: str | None = None
) -> None:
    """Write a report of several checks to path, atomically (a temporary file renamed)."""
    write_text(path, render_html(sections, title))


def render_html(sections: Sequence[Section], title: str | None = None) -> str:
    """The whole page."""
    if title is None:
        names = [s.result.model for s in sections]
        title = names[0] if len(names) == 1 else f"{len(names)} checks"
    body = "\n".join(_section(i, s) for i, s in enumerate(sections))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>kvmsim: {_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<header class="page"><h1>kvmsim report: {_e(title)}</h1>'
        f'<p class="generator">written by kvmsim {_e(__version__)}; click a step to see what '
        "it changed</p></header>\n"
        f"{body}\n<script>{JS}</script>\n</body>\n</html>\n"
    )


# -- one check --------------------------------------------------------------------------------


def _section(i: int, s: Section) -> str:
    r = s.result
    model = s.model
    desc = f": {model.description}" if model is not None and model.description else ""
    parts = [f'<section class="check" id="check-{i}">', f"<h2>{_e(r.model)}{_e(desc)}</h2>"]
    if model is not None and model.expect:
        parts.append(f'<p class="dim">expected: {_e(model.expect)}</p>')
    for note in s.notes:
        parts.append(f'<p class="dim">{_e(note)}</p>')
    verdict_class = "violated" if r.violations else ("holds" if r.verdict == "holds" else "bounded")
    verdict = f"violated: {', '.join(r.violated())}" if r.violations else r.verdict
    parts.append(f'<p class="verdict {verdict_class}">verdict: {_e(verdict)}</p>')
    parts.append(f'<p class="stats dim">{_e(stats_line(r))}</p>')
    for note in r.notes:
        parts.append(f'<p class="dim">note: {_e(note)}</p>')
    if r.costs:
        parts.append(_costs(r))
    actors = list(s.actors) or _model_actors(model)
    for n, v in enumerate(r.violations):
        parts.append(
            _violation(
                f"{i}-{n}",
                v,
                f"counterexample {n + 1} of {len(r.violations)}",
                s.lanes,
                s.style,
                s.tokens.get(v.prop),
                actors,
            )
        )
    if not r.violations:
        parts.append('<p class="none">no counterexample</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _model_actors(model: Model | None) -> list[tuple[str, str]]:
    if model is None:
        return []
    try:
        _root, specs = model.build()
    except Exception:  # a report must not fail because the model cannot be rebuilt
        return []
    return [(a.name, a.lane) for a in specs]


def _costs(r: Result) -> str:
    rows = []
    for name, c in r.costs.items():
        high = "unbounded" if c.max is None else str(c.max)
        rows.append(
            f'<tr><td>{_e(name)}</td><td class="num">{c.min}</td><td class="num">{_e(high)}'
            "</td></tr>"
        )
    return (
        '<table class="costs"><caption>cost over every complete behaviour</caption>'
        "<thead><tr><th>cost</th><th>min</th><th>max</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _violation(
    vid: str,
    v: Violation,
    header: str,
    lane_order: Sequence[str],
    style: ValueStyle | None,
    token: str | None,
    actors: Sequence[tuple[str, str]],
) -> str:
    title = v.prop if v.prop == v.kind else f"{v.prop} ({v.kind})"
    trace = v.trace
    if trace is not None:
        n = len(trace)
        title += f", {n} step{'s' if n != 1 else ''}"
        if trace.loop_start is not None:
            title += f" (the steps from {trace.loop_start + 1} on repeat forever)"
    parts = [
        f'<div class="counterexample" id="cx-{vid}" data-property="{_e(v.prop)}">',
        f"<h3>{_e(header)}: {_e(title)}</h3>",
        f'<p class="property"><span class="bad">✗ {_e(v.prop)}</span>'
        + (f": {_e(v.message)}" if v.message else "")
        + "</p>",
    ]
    sentence = meaning(v)
    if sentence:
        parts.append(f'<p class="meaning">{_e(sentence)}</p>')
    if token:
        parts.append(
            f'<p class="replay">replay: <code class="token">kvmsim replay {_e(token)}</code></p>'
        )
    if trace is not None and trace.steps:
        diagram = Diagram(trace, lane_order, style, actors)
        parts.append(diagram.html(vid))
    parts.append("</div>")
    return "\n".join(parts)


# -- the sequence diagram ---------------------------------------------------------------------


def _wrap(text: str, width: int = CHARS) -> list[str]:
    """Lines of at most width characters: broken at spaces when possible, else hard."""
    out: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            while len(word) > width:
                if line:
                    out.append(line)
                    line = ""
                out.append(word[:width])
                word = word[width:]
            if not line:
                line = word
            elif len(line) + 1 + len(word) <= width:
                line += " " + word
            else:
                out.append(line)
                line = word
        out.append(line)
    return out


def _cut(lines: list[str], most: int) -> list[str]:
    if len(lines) <= most:
        return lines
    last = lines[most - 1]
    return lines[: most - 1] + [(last[: CHARS - 1] if len(last) >= CHARS else last) + "…"]


@dataclass
class _Row:
    step: TraceStep
    top: float
    height: float
    lines: list[tuple[str, str]]  # (css class, text)
    arrows: list[tuple[str, list[str]]]  # (target lane, label lines)


class Diagram:
    """The layout of one trace: lanes, rows, arrows."""

    def __init__(
        self,
        trace: Trace,
        lane_order: Sequence[str],
        style: ValueStyle | None,
        actors: Sequence[tuple[str, str]],
    ) -> None:
        self.trace = trace
        self.style = style or ValueStyle()
        self.full = style if isinstance(style, CompactStyle) else None
        self.owner: dict[str, str] = {}  # variable prefix -> lane
        for name, lane in actors:
            self.owner[name] = lane
        for step in trace.steps:
            self.owner.setdefault(step.actor, step.lane)
        self.lane_names = {lane.lower(): lane for lane in self.owner.values()}
        used = [s.lane for s in trace.steps]
        targets = [t for s in trace.steps for t in self._targets(s)]
        lanes = [lane for lane in dict.fromkeys(lane_order) if lane in used or lane in targets]
        for lane in used + targets:
            if lane not in lanes:
                lanes.append(lane)
        self.lanes = lanes
        self.rows: list[_Row] = []
        y = 0.0
        self.loop_y: float | None = None
        for step in trace.steps:
            if trace.loop_start is not None and step.index == trace.loop_start:
                self.loop_y = y
                y += LOOP_H
            lines = self._lines(step)
            arrows = [
                (lane, _cut(_wrap("; ".join(labels)), LABEL_LINES))
                for lane, labels in self._targets(step).items()
            ]
            box = len(lines) * LINE_H + 2 * PAD
            band = (LABEL_LINES * LINE_H + 10) * len(arrows) + 2 * PAD
            height = max(box, band)
            self.rows.append(_Row(step, y, height, lines, arrows))
            y += height + ROW_GAP
        self.height = y + PAD
        self.width = NUM_W + LANE_W * len(self.lanes)

    def _lane_of_var(self, var: str) -> str | None:
        head = var.split(".", 1)[0].split("[", 1)[0]
        if head in self.owner:
            return self.owner[head]
        return self.lane_names.get(head.lower())

    def _targets(self, step: TraceStep) -> dict[str, list[str]]:
        """The other lanes whose variables the step changed, with what changed there."""
        out: dict[str, list[str]] = {}
        for var, before, after in step.changes:
            lane = self._lane_of_var(var)
            if lane is not None and lane != step.lane:
                name = var.split(".", 1)[-1]  # the lane says whose variable it is
                out.setdefault(lane, []).append(self.style.change(name, before, after))
        return out

    def _lines(self, step: TraceStep) -> list[tuple[str, str]]:
        who = step.function or step.actor
        if step.actor != step.lane:
            who = f"{step.actor}: {who}"
        lines = [("fn", line) for line in _wrap(who)]
        failed = step.kind not in ("ok", "property") or (
            step.kind == "property" and step.label == "property" and not step.changes
        )
        if step.label and step.label != step.kind:
            lines += [("label", line) for line in _cut(_wrap(step.label), MAX_LABEL_LINES)]
        for choice in step.choices:
            lines += [("choice", line) for line in _wrap(f"chose {choice}")]
        if step.events:
            lines += [("cost", line) for line in _wrap(f"cost: {', '.join(step.events)}")]
        if not failed and step.changes:
            n = len(step.changes)
            lines.append(("changes", f"{n} change{'s' if n != 1 else ''}"))
        if step.kind != "ok":
            what = step.message if step.kind == "property" else f"{step.kind}: {step.message}"
            lines += [("bad", line) for line in _cut(_wrap(f"✗ {what}"), MAX_LABEL_LINES)]
        return lines

    # -- output -----------------------------------------------------------------------------
    def html(self, vid: str) -> str:
        header = "".join(
            f'<div class="lane-header" style="width:{LANE_W}px;border-color:{_stroke(i)}">'
            f"{_e(lane)}</div>"
            for i, lane in enumerate(self.lanes)
        )
        return (
            '<div class="viewer">'
            f'<div class="diagram" tabindex="-1"><div class="lanes" style="width:{self.width}px">'
            f'<div class="lane-header num" style="width:{NUM_W}px">#</div>{header}</div>'
            f"{self.svg()}</div>"
            '<aside class="detail"><p class="hint">Click a step to see the state it changed.'
            "</p></aside></div>"
            f'<script type="application/json" class="trace-data">{self.data_json()}</script>'
        )

    def svg(self) -> str:
        w, h = self.width, self.height
        out = [
            f'<svg class="sequence" width="{w}" '
            f'height="{h:.0f}" viewBox="0 0 {w} {h:.0f}" font-size="{FONT_PX}">',
            "<defs>"
            + "".join(
                f'<marker id="arrow-{i}" viewBox="0 0 10 10" refX="9" refY="5" '
                'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
                f'<path d="M0,0 L10,5 L0,10 z" fill="{_stroke(i)}"/></marker>'
                for i in range(len(self.lanes))
            )
            + "</defs>",
        ]
        for i, _lane in enumerate(self.lanes):
            x = NUM_W + i * LANE_W + LANE_W / 2
            out.append(
                f'<line class="lifeline" x1="{x}" y1="0" x2="{x}" y2="{h:.0f}" '
                f'stroke="{_stroke(i)}"/>'
            )
        if self.loop_y is not None:
            y = self.loop_y
            out.append(
                f'<g class="loop-marker"><line x1="0" y1="{y + LOOP_H / 2}" x2="{w}" '
                f'y2="{y + LOOP_H / 2}"/><text x="{NUM_W + 6}" y="{y + LOOP_H / 2 - 4}">'
                "loop: the steps below repeat forever</text></g>"
            )
        last = len(self.rows) - 1
        for k, row in enumerate(self.rows):
            out.append(self._row_svg(row, violated=k == last))
        out.append("</svg>")
        return "".join(out)

    def _row_svg(self, row: _Row, violated: bool) -> str:
        step = row.step
        li = self.lanes.index(step.lane)
        x0 = NUM_W + li * LANE_W + 4
        bw = LANE_W - 8
        classes = ["step"]
        if violated:
            classes.append("violated")
        elif step.kind != "ok":
            classes.append("failed")
        parts = [
            f'<g class="{" ".join(classes)}" data-step="{step.index}" data-lane="{_e(step.lane)}" '
            f'tabindex="0" role="button" aria-label="step {step.index + 1}">',
            f'<rect class="hit" x="0" y="{row.top - ROW_GAP / 2}" width="{self.width}" '
            f'height="{row.height + ROW_GAP}"/>',
            f'<text class="num" x="{NUM_W - 8}" y="{row.top + PAD + 12}" '
            f'text-anchor="end">{step.index + 1}</text>',
            f'<rect class="box" x="{x0}" y="{row.top}" width="{bw}" '
            f'height="{len(row.lines) * LINE_H + 2 * PAD}" rx="6" fill="{_fill(li)}" '
            f'stroke="{_stroke(li)}"/>',
        ]
        for j, (cls, line) in enumerate(row.lines):
            parts.append(
                f'<text class="{cls}" x="{x0 + PAD}" y="{row.top + PAD + 12 + j * LINE_H}">'
                f"{_e(line)}</text>"
            )
        for k, (lane, label) in enumerate(row.arrows):
            ti = self.lanes.index(lane)
            band_top = row.top + PAD + k * (LABEL_LINES * LINE_H + 10)
            y = band_top + LABEL_LINES * LINE_H + 4
            if ti > li:
                xa, xb = x0 + bw, NUM_W + ti * LANE_W + LANE_W / 2
                tx = NUM_W + ti * LANE_W + PAD
            else:
                xa, xb = x0, NUM_W + ti * LANE_W + LANE_W / 2
                tx = NUM_W + ti * LANE_W + PAD
            parts.append(
                f'<line class="arrow" data-to="{_e(lane)}" x1="{xa}" y1="{y}" x2="{xb}" '
                f'y2="{y}" stroke="{_stroke(li)}" marker-end="url(#arrow-{li})"/>'
            )
            for j, line in enumerate(label):
                parts.append(
                    f'<text class="arrow-label" x="{tx}" y="{band_top + 12 + j * LINE_H}">'
                    f"{_e(line)}</text>"
                )
        parts.append("</g>")
        return "".join(parts)

    def data_json(self) -> str:
        """What the detail panel shows, as JSON for the page's script."""
        trace = self.trace
        variables = list(trace.initial)
        for step in trace.steps:
            for var, _b, _a in step.changes:
                if var not in variables:
                    variables.append(var)
        index = {v: i for i, v in enumerate(variables)}
        doc: dict[str, Any] = {
            "vars": variables,
            "initial": [self._value(trace.initial.get(v)) for v in variables],
            "loop": trace.loop_start,
            "steps": [
                {
                    "n": s.index + 1,
                    "actor": s.actor,
                    "lane": s.lane,
                    "function": s.function,
                    "stack": list(s.stack),
                    "label": s.label,
                    "choices": list(s.choices),
                    "events": list(s.events),
                    "kind": s.kind,
                    "message": s.message,
                    "changes": [
                        [index[var], self._value(b), self._value(a)] for var, b, a in s.changes
                    ],
                }
                for s in trace.steps
            ],
        }
        return json.dumps(doc, ensure_ascii=False).replace("</", "<\\/")

    def _value(self, value: Any) -> str:
        return self.full.value(value) if self.full is not None else repr(value)


def _fill(i: int) -> str:
    return LANE_COLOURS[i % len(LANE_COLOURS)]


def _stroke(i: int) -> str:
    return LANE_STROKES[i % len(LANE_STROKES)]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


CSS = """
:root { --mono: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 20px 40px;
  color: #202124; background: #fff; }
h1 { font-size: 20px; margin: 16px 0 2px; }
h2 { font-size: 17px; margin: 28px 0 4px; border-top: 1px solid #dadce0; padding-top: 14px; }
h3 { font-size: 15px; margin: 22px 0 4px; color: #a50e0e; }
p { margin: 4px 0; }
.dim, .generator { color: #5f6368; }
.verdict { font-weight: 600; }
.verdict.violated, .bad { color: #c5221f; }
.verdict.holds { color: #188038; }
.verdict.bounded { color: #b06000; }
.meaning { max-width: 70em; }
code.token { font-family: var(--mono); font-size: 12px; background: #f1f3f4; padding: 1px 4px;
  word-break: break-all; user-select: all; }
table.costs { border-collapse: collapse; margin: 8px 0; }
table.costs caption { text-align: left; color: #5f6368; }
table.costs td, table.costs th { border: 1px solid #dadce0; padding: 2px 10px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.viewer { display: flex; gap: 14px; align-items: flex-start; margin-top: 8px; }
.diagram { position: relative; overflow: auto; max-height: 78vh; border: 1px solid #dadce0;
  border-radius: 6px; flex: 0 1 auto; max-width: calc(100vw - 460px); min-width: 360px; }
.lanes { position: sticky; top: 0; z-index: 2; display: flex; background: #fff;
  border-bottom: 1px solid #dadce0; }
.lane-header { flex: none; padding: 6px 8px; font-weight: 600; font-family: var(--mono);
  border-top: 4px solid #5f6368; text-align: center; background: #fff; }
.lane-header.num { border-top-color: transparent; color: #5f6368; }
svg.sequence { display: block; font-family: var(--mono); }
svg .lifeline { stroke-width: 1; stroke-dasharray: 4 4; opacity: .45; }
svg .step { cursor: pointer; outline: none; }
svg .step .hit { fill: transparent; pointer-events: all; }
svg .step:hover .hit { fill: rgba(26, 115, 232, .04); }
svg .step.selected .hit { fill: rgba(26, 115, 232, .07); }
svg .step .box { stroke-width: 1; }
svg .step:hover .box, svg .step:focus .box { stroke-width: 2; }
svg .step.selected .box { stroke: #1a73e8; stroke-width: 3; }
svg .step.violated .box { stroke: #c5221f; stroke-width: 3; fill: #fce8e6; }
svg .step.failed .box { stroke: #c5221f; stroke-dasharray: 5 3; }
svg .step.violated.selected .box { stroke: #1a73e8; }
svg text { fill: #202124; white-space: pre; }
svg text.num { fill: #5f6368; }
svg text.fn { font-weight: 700; }
svg text.choice { fill: #8430ce; }
svg text.cost { fill: #b06000; }
svg text.changes { fill: #007b83; }
svg text.bad { fill: #c5221f; font-weight: 700; }
svg text.arrow-label { fill: #3c4043; font-size: 11px; }
svg .arrow { stroke-width: 1.6; }
svg .loop-marker line { stroke: #b06000; stroke-dasharray: 6 4; }
svg .loop-marker text { fill: #b06000; font-weight: 700; }
.detail { position: sticky; top: 8px; width: 420px; flex: none; max-height: 78vh;
  overflow: auto; border: 1px solid #dadce0; border-radius: 6px; padding: 10px 12px;
  font-size: 13px; }
.detail h4 { margin: 0 0 4px; font-size: 14px; }
.detail .fn { font-family: var(--mono); font-weight: 700; }
.detail .stack { font-family: var(--mono); color: #5f6368; font-size: 12px; }
.detail table { border-collapse: collapse; width: 100%; margin-top: 8px;
  font-family: var(--mono); font-size: 12px; }
.detail td, .detail th { border-bottom: 1px solid #eee; padding: 2px 4px; vertical-align: top;
  text-align: left; word-break: break-all; }
.detail tr.changed td { background: #fef7e0; }
.detail tr.changed td.after { background: #e6f4ea; font-weight: 700; }
.detail tr.changed td.before { color: #5f6368; text-decoration: line-through; }
.detail button { margin-top: 8px; font: inherit; cursor: pointer; }
.detail .bad { font-weight: 700; }
.hint { color: #5f6368; }
@media (max-width: 900px) { .viewer { flex-direction: column; }
  .diagram { max-width: 100%; } .detail { position: static; width: 100%; } }
"""

JS = r"""
(function () {
  "use strict";
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setup(cx) {
    var data = JSON.parse(cx.querySelector("script.trace-data").textContent);
    var detail = cx.querySelector(".detail");
    var steps = Array.prototype.slice.call(cx.querySelectorAll("svg .step"));
    function stateAfter(k) {
      var st = data.initial.slice();
      for (var i = 0; i <= k; i++) {
        data.steps[i].changes.forEach(function (c) { st[c[0]] = c[2]; });
      }
      return st;
    }
    function show(k) {
      var s = data.steps[k];
      steps.forEach(function (g) { g.classList.toggle("selected", +g.dataset.step === k); });
      detail.textContent = "";
      detail.dataset.step = String(k);
      detail.appendChild(el("h4", "", "step " + s.n + " of " + data.steps.length + " \u00b7 " +
        s.lane + (s.actor !== s.lane ? " \u00b7 " + s.actor : "")));
      detail.appendChild(el("div", "fn", s.function || s.actor));
      if (s.stack.length > 1) detail.appendChild(el("div", "stack", s.stack.join(" \u203a ")));
      if (s.label && s.label !== s.kind) detail.appendChild(el("div", "label", s.label));
      s.choices.forEach(function (c) { detail.appendChild(el("div", "choice", "chose " + c)); });
      if (s.events.length) detail.appendChild(el("div", "cost", "cost: " + s.events.join(", ")));
      if (s.kind !== "ok") {
        var what = s.kind === "property" ? s.message : s.kind + ": " + s.message;
        detail.appendChild(el("div", "bad", "\u2717 " + what));
      }
      var changed = {};
      var table = el("table", "changes");
      var head = el("tr");
      ["variable", "before", "after"].forEach(function (h) { head.appendChild(el("th", "", h)); });
      table.appendChild(head);
      s.changes.forEach(function (c) {
        changed[c[0]] = true;
        var tr = el("tr", "changed");
        tr.appendChild(el("td", "var", data.vars[c[0]]));
        tr.appendChild(el("td", "before", c[1]));
        tr.appendChild(el("td", "after", c[2]));
        table.appendChild(tr);
      });
      if (!s.changes.length) detail.appendChild(el("p", "hint", "this step changed no state"));
      else detail.appendChild(table);
      var st = stateAfter(k);
      var rest = el("table", "unchanged");
      var count = 0;
      data.vars.forEach(function (v, i) {
        if (changed[i]) return;
        var tr = el("tr");
        tr.appendChild(el("td", "var", v));
        tr.appendChild(el("td", "value", st[i]));
        rest.appendChild(tr);
        count++;
      });
      rest.hidden = true;
      var button = el("button", "toggle-unchanged", "show " + count + " unchanged");
      button.type = "button";
      button.addEventListener("click", function () {
        rest.hidden = !rest.hidden;
        button.textContent = (rest.hidden ? "show " : "hide ") + count + " unchanged";
      });
      detail.appendChild(button);
      detail.appendChild(rest);
    }
    steps.forEach(function (g) {
      g.addEventListener("click", function () { show(+g.dataset.step); g.focus(); });
      g.addEventListener("keydown", function (ev) {
        var k = +g.dataset.step;
        if (ev.key === "Enter" || ev.key === " ") { show(k); ev.preventDefault(); }
        if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
          var next = steps[k + (ev.key === "ArrowDown" ? 1 : -1)];
          if (next) { next.focus(); show(+next.dataset.step); }
          ev.preventDefault();
        }
      });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll(".counterexample"), function (cx) {
    if (cx.querySelector("script.trace-data")) setup(cx);
  });
})();
"""
