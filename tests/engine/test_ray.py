"""The partitioned search and the swarm on a local Ray instance (skipped without Ray).

One test, so that one test process starts Ray once (a few seconds) whatever the scheduler.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmsim.builders import ModelBuilder
from kvmsim.demos import DEMOS
from kvmsim.engine import ModelError, Options, check
from kvmsim.machine import build_model
from kvmsim.replay import ModelRef
from kvmsim.scenarios import get_scenario
from kvmsim.variants import get_variant

from .test_parallel import summary

RAISING = """
from kvmsim import Model, Setup, Struct


class Cell(Struct):
    value: int = 0


def adder(c):
    c.value += 1
    yield "add"


model = Model("raising")


@model.setup
def setup(s: Setup) -> Cell:
    c = Cell()
    s.actor("a", adder, c)
    return c


@model.invariant("raises")
def raises(c):
    return 1 // c.value > 0  # raises in the initial state
"""

ray = pytest.importorskip("ray")


def test_on_ray(tmp_path: Path) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # the partitioned search, on a textbook model and on the KVM model's v4.15 bug
        demo = ModelBuilder.of(ModelRef("demo", "philosophers"))
        one = check(DEMOS["philosophers"], Options(liveness=False))
        on_ray = check(
            DEMOS["philosophers"],
            Options(liveness=False, workers=2, backend="ray", builder=demo),
        )
        assert summary(on_ray) == summary(one)
        assert any("2 workers (ray;" in n for n in on_ray.notes)
        model = build_model(get_variant("v4.15"), get_scenario("migrate"))
        kvm = ModelBuilder.of(ModelRef("kvm", "v4.15", "migrate"))
        one = check(model, Options(liveness=False))
        on_ray = check(model, Options(liveness=False, workers=2, backend="ray", builder=kvm))
        assert summary(on_ray) == summary(one) and on_ray.violated() == ["INV-APIC"]
        # the swarm
        swarm = check(
            model, Options(mode="swarm", workers=2, runs=200, seed=1, backend="ray", builder=kvm)
        )
        assert swarm.violated() == ["INV-APIC"] and swarm.stats.runs == 200
        # a worker's error is raised as itself (a model file: the workers load it)
        path = tmp_path / "raising.py"
        path.write_text(RAISING)
        builder = ModelBuilder.of(ModelRef("file", str(path)))
        with pytest.raises(ModelError) as here:
            check(builder(), Options(liveness=False))
        with pytest.raises(ModelError) as there:
            check(builder(), Options(liveness=False, workers=2, backend="ray", builder=builder))
        assert str(there.value).splitlines()[0] == str(here.value).splitlines()[0]
        assert ray.is_initialized()  # a search leaves an instance it did not start running
    finally:
        ray.shutdown()
