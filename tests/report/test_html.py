"""The HTML report: self-contained, one lane per CPU, a row per step, the violated step marked,
a click shows a step's state diff; readable at 200 steps (no overlapping text, lane headers
stay on screen). Checked in a real headless Chromium driven by Selenium.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them): without them they are skipped locally, and fail under CI (``CI`` set).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvmsim.cli import main
from kvmsim.demos import DEMOS
from kvmsim.engine import Result, Stats, Violation, check
from kvmsim.engine.trace import Trace, TraceStep
from kvmsim.report.html import CHARS, Diagram, render_html, write_html
from kvmsim.report.values import CompactStyle

ROOT = Path(__file__).resolve().parent.parent.parent
NO_LATE_CHECK = f"{ROOT / 'tests' / 'kernel' / 'mutants.py'}:no_late_check"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]


# -- a long synthetic trace -------------------------------------------------------------------


def long_trace(n: int = 200) -> Trace:
    """n steps over two vCPUs and a host thread, with long labels (and long words), requests
    sent from the host to the vCPUs, and a violated event property at the end."""
    actors = [("vcpu0", "CPU0"), ("vcpu1", "CPU1"), ("host0", "host0")]
    state: dict[str, Any] = {
        "vcpu0.requests": frozenset(),
        "vcpu1.requests": frozenset(),
        "vcpu0.mode": "OUTSIDE_GUEST_MODE",
        "vcpu1.mode": "OUTSIDE_GUEST_MODE",
        "cpu1.tlb": frozenset({("L1", 0xFEE00, 0)}),
        "kvm.seq": 0,
    }
    initial = dict(state)
    steps = []
    for i in range(n):
        actor, lane = actors[i % 3 if i % 7 else 2]
        changes = []
        if actor == "host0":
            target = f"vcpu{i % 2}.requests"
            new = state[target] | {f"KVM_REQ_{i}_WITH_A_RATHER_LONG_NAME"}
            changes.append((target, state[target], new))
            if i % 2:
                tlb = frozenset() if state["cpu1.tlb"] else frozenset({("L1", 0xFEE00, i)})
                changes.append(("cpu1.tlb", state["cpu1.tlb"], tlb))
            changes.append(("kvm.seq", state["kvm.seq"], state["kvm.seq"] + 1))
        else:
            var = f"{actor}.mode"
            new = "IN_GUEST_MODE" if state[var] != "IN_GUEST_MODE" else "EXITING_GUEST_MODE"
            changes.append((var, state[var], new))
        for var, _before, after in changes:
            state[var] = after
        label = f"step {i}: " + " ".join(["kvm_make_all_cpus_request"] * (1 + i % 4))
        if i % 11 == 0:
            label += " " + "x" * 90  # a word longer than a lane
        last = i == n - 1
        steps.append(
            TraceStep(
                i,
                actor,
                lane,
                label,
                ("vcpu_run", "vcpu_enter_guest") if actor != "host0" else ("host_thread",),
                ("a choice",) if i % 13 == 0 else (),
                tuple(changes),
                kind="property" if last else "ok",
                message="vcpu0 entered the guest with a request pending" if last else "",
                events=("vm_enter",) if i % 5 == 0 else (),
            )
        )
    path: list[tuple[int, tuple[int, ...]]] = [(0, ())] * n
    return Trace(steps, path, None, dict(state), initial)


def long_result(n: int = 200) -> Result:
    trace = long_trace(n)
    v = Violation("INV-REQ", "property", trace.steps[-1].message, trace, "What it means.")
    return Result("synthetic", "bfs", Stats(states=1), [v])


# -- without a browser ----------------------------------------------------------------------------


def test_the_page_is_self_contained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.html"
    code = main(["check", "--variant", NO_LATE_CHECK, "--scenario", "migrate", "--html", str(path)])
    assert code == 1
    assert f"wrote {path}" in capsys.readouterr().err
    page = path.read_text(encoding="utf-8")
    for fetch in ("http:", "https:", "<link", " src=", "@import", "//cdn"):
        assert fetch not in page, fetch
    assert not re.search(r"url\((?!#)", page)  # only the page's own markers
    assert page.count('class="counterexample"') == 4
    assert page.count("kvmsim replay kvmsim1:") == 4  # each with its replay command
    assert "<svg" in page and "<style>" in page and "<script>" in page


def test_several_scenarios_share_one_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import kvmsim.cli_kvm
    from kvmsim.scenarios import SCENARIOS

    two = [SCENARIOS["migrate"], SCENARIOS["zap"]]
    monkeypatch.setattr(kvmsim.cli_kvm, "default_scenarios", lambda: two)
    page, trace = tmp_path / "r.html", tmp_path / "t.json"
    argv = ["check", "--variant", NO_LATE_CHECK, "--quiet", "--html", str(page)]
    assert main([*argv, "--trace-out", str(trace)]) == 1
    text = page.read_text(encoding="utf-8")
    assert text.count('<section class="check"') == 2
    assert "mutant-no-late-check / migrate" in text and "mutant-no-late-check / zap" in text
    assert '"scenario": "migrate"' in trace.read_text()  # the first counterexample


def test_a_long_trace_never_overlaps_and_stays_within_its_lanes() -> None:
    trace = long_trace()
    d = Diagram(trace, ["CPU0", "CPU1", "host0"], CompactStyle(hex_from=0x100), [])
    assert d.lanes == ["CPU0", "CPU1", "host0"]
    rows = d.rows
    assert len(rows) == 200
    for a, b in zip(rows, rows[1:]):
        assert a.top + a.height <= b.top  # rows never overlap
    for row in rows:
        assert all(len(text) <= CHARS for _cls, text in row.lines)
        assert all(len(line) <= CHARS for _lane, label in row.arrows for line in label)
    # the host's requests are arrows to the vCPU lanes, a TLB flush one to CPU1's
    host_rows = [r for r in rows if r.step.actor == "host0"]
    assert {lane for r in host_rows for lane, _ in r.arrows} == {"CPU0", "CPU1"}


def test_cost_figures_are_shown_when_the_run_computed_them(tmp_path: Path) -> None:
    from kvmsim.cli_kvm import KVM_STYLE, lanes_of
    from kvmsim.engine import Options
    from kvmsim.machine import build_model
    from kvmsim.scenarios import SCENARIOS
    from kvmsim.variants import get_variant

    model = build_model(get_variant("v6.5"), SCENARIOS["migrate"])
    result = check(model, Options(costs=True))
    assert result.costs
    path = tmp_path / "costs.html"
    write_html(result, model, path, lanes=lanes_of(SCENARIOS["migrate"]), style=KVM_STYLE)
    page = path.read_text(encoding="utf-8")
    assert "cost over every complete behaviour" in page
    for name, c in result.costs.items():
        high = "unbounded" if c.max is None else str(c.max)
        assert f'<td>{name}</td><td class="num">{c.min}</td><td class="num">{high}</td>' in page


def test_the_report_of_a_model_that_holds() -> None:
    model = DEMOS["peterson"]
    page = render_html_for(check(model), model)
    assert "verdict: holds" in page and "no counterexample" in page


def render_html_for(result: Result, model: Any) -> str:
    from kvmsim.report.html import Section

    return render_html([Section(result, model)])


# -- in a browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = f"no {' and no '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    profile = tempfile.mkdtemp(prefix="kvmsim-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def test_kvm_counterexamples_in_the_browser(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By

    path = tmp_path / "report.html"
    assert main(["check", "--variant", NO_LATE_CHECK, "--scenario", "migrate", "--html", str(path)])
    result = check_result()
    browser.get(path.as_uri())
    cxs = browser.find_elements(By.CSS_SELECTOR, ".counterexample")
    assert [c.get_attribute("data-property") for c in cxs] == result.violated()
    for cx, v in zip(cxs, result.violations):
        assert v.trace is not None
        headers = [h.text for h in cx.find_elements(By.CSS_SELECTOR, ".lane-header:not(.num)")]
        assert headers == ["CPU0", "host0"]  # one lane per CPU, then the host thread
        steps = cx.find_elements(By.CSS_SELECTOR, "svg .step")
        assert len(steps) == len(v.trace)
        marked = cx.find_elements(By.CSS_SELECTOR, "svg .step.violated")
        assert [m.get_attribute("data-step") for m in marked] == [str(len(v.trace) - 1)]
    # INV-REQ: the host's request to vcpu0 is an arrow into CPU0's lane
    first = cxs[0]
    arrows = first.find_elements(By.CSS_SELECTOR, 'svg .step[data-lane="host0"] .arrow')
    assert [a.get_attribute("data-to") for a in arrows] == ["CPU0"]
    # clicking a step shows what it changed, the rest behind a toggle
    trace = result.violations[0].trace
    assert trace is not None
    k = next(i for i, s in enumerate(trace.steps) if len(s.changes) >= 2)
    step = first.find_elements(By.CSS_SELECTOR, "svg .step")[k]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", step)
    step.click()
    detail = first.find_element(By.CSS_SELECTOR, ".detail")
    assert detail.find_element(By.TAG_NAME, "h4").text.startswith(f"step {k + 1} of {len(trace)}")
    rows = detail.find_elements(By.CSS_SELECTOR, "tr.changed")
    assert [r.find_element(By.CSS_SELECTOR, "td.var").text for r in rows] == [
        var for var, _b, _a in trace.steps[k].changes
    ]
    assert "selected" in (step.get_attribute("class") or "")
    unchanged = detail.find_element(By.CSS_SELECTOR, "table.unchanged")
    assert not unchanged.is_displayed()
    detail.find_element(By.CSS_SELECTOR, "button.toggle-unchanged").click()
    assert unchanged.is_displayed()
    n_vars = len(
        js(
            browser,
            "return JSON.parse(arguments[0].textContent).vars",
            first.find_element(By.CSS_SELECTOR, "script.trace-data"),
        )
    )
    assert len(unchanged.find_elements(By.TAG_NAME, "tr")) == n_vars - len(rows)
    # a screenshot that is not blank
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert len(png_colours(shot.read_bytes())) >= 8


def check_result() -> Result:
    from kvmsim.cli_kvm import explain, resolve_variant
    from kvmsim.machine import build_model
    from kvmsim.scenarios import SCENARIOS

    return explain(check(build_model(resolve_variant(NO_LATE_CHECK), SCENARIOS["migrate"])))


OVERLAPS = """
const root = arguments[0];
const boxes = Array.from(root.querySelectorAll("svg text")).map(t => t.getBoundingClientRect());
let overlaps = 0;
for (let i = 0; i < boxes.length; i++) {
  const a = boxes[i];
  for (let j = i + 1; j < boxes.length; j++) {
    const b = boxes[j];
    if (a.left < b.right - 0.5 && b.left < a.right - 0.5 &&
        a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) overlaps++;
  }
}
let outside = 0;
root.querySelectorAll("svg .step").forEach(g => {
  const r = g.querySelector("rect.box").getBoundingClientRect();
  g.querySelectorAll("text:not(.num):not(.arrow-label)").forEach(t => {
    const b = t.getBoundingClientRect();
    if (b.left < r.left || b.right > r.right || b.top < r.top || b.bottom > r.bottom) outside++;
  });
});
const rects = Array.from(root.querySelectorAll("rect.box")).map(r => r.getBoundingClientRect());
let labelsOnBoxes = 0;
root.querySelectorAll("text.arrow-label").forEach(t => {
  const a = t.getBoundingClientRect();
  rects.forEach(b => {
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
      labelsOnBoxes++;
  });
});
return [boxes.length, overlaps, outside, labelsOnBoxes];
"""


def test_a_200_step_trace_is_readable(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    path = tmp_path / "long.html"
    write_html(
        long_result(),
        None,
        path,
        lanes=["CPU0", "CPU1", "host0"],
        style=CompactStyle(hex_from=0x100),
        actors=[("vcpu0", "CPU0"), ("vcpu1", "CPU1"), ("host0", "host0")],
    )
    browser.get(path.as_uri())
    cx = browser.find_element(By.CSS_SELECTOR, ".counterexample")
    assert len(cx.find_elements(By.CSS_SELECTOR, "svg .step")) == 200
    headers = [h.text for h in cx.find_elements(By.CSS_SELECTOR, ".lane-header:not(.num)")]
    assert headers == ["CPU0", "CPU1", "host0"]
    texts, overlaps, outside, on_boxes = js(browser, OVERLAPS, cx)
    assert texts > 600
    assert (overlaps, outside, on_boxes) == (0, 0, 0)
    # the lane headers stay on screen while the diagram scrolls to its end
    diagram = cx.find_element(By.CSS_SELECTOR, ".diagram")
    js(browser, "arguments[0].scrollIntoView(); arguments[0].scrollTop = 1e9", diagram)
    top = js(browser, "return arguments[0].getBoundingClientRect().top", diagram)
    header = js(
        browser,
        "return arguments[0].querySelector('.lanes').getBoundingClientRect().top",
        diagram,
    )
    assert abs(header - top) <= 2
    assert js(browser, "return arguments[0].scrollTop", diagram) > 10_000
    last = cx.find_elements(By.CSS_SELECTOR, "svg .step")[-1]
    assert "violated" in (last.get_attribute("class") or "")
    last.click()
    assert "step 200 of 200" in cx.find_element(By.CSS_SELECTOR, ".detail h4").text
    # keyboard: up goes to the step before
    from selenium.webdriver.common.keys import Keys

    last.send_keys(Keys.ARROW_UP)
    assert "step 199 of 200" in cx.find_element(By.CSS_SELECTOR, ".detail h4").text
    shot = tmp_path / "long.png"
    assert browser.save_screenshot(str(shot))
    assert len(png_colours(shot.read_bytes())) >= 8


# -- PNG ------------------------------------------------------------------------------------------


def png_colours(data: bytes) -> set[tuple[int, ...]]:
    """The distinct pixel colours of an 8-bit RGB or RGBA PNG (a screenshot)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = colour = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours: set[tuple[int, ...]] = set()
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        if y % 8 == 0:  # a sample of the rows is plenty
            for x in range(0, stride, bpp * 4):
                colours.add(tuple(line[x : x + 3]))
        prev = line
    return colours
