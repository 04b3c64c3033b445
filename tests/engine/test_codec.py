"""The state codec: canonical bytes, round trips, fingerprints stable across processes."""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

from kvmsim.demos import DEMOS
from kvmsim.engine import Model, ModelError, Setup, Struct
from kvmsim.engine.codec import StateCodec, fingerprint_bytes
from kvmsim.engine.system import State, System
from kvmsim.machine import build_model
from kvmsim.scenarios import SCENARIOS
from kvmsim.variants import get_variant

from .support import Steps

SRC = str(Path(__file__).resolve().parents[2] / "src")


def reachable(system: System, limit: int = 3000) -> list[State]:
    """The first states of a breadth-first search (plain dict, no engine search code)."""
    seen: dict[State, None] = {system.initial: None}
    queue = deque([system.initial])
    while queue and len(seen) < limit:
        state = queue.popleft()
        for _a, _sc, out in system.successors(state):
            if out.kind == "ok" and out.state is not None and out.state not in seen:
                seen[out.state] = None
                queue.append(out.state)
    return list(seen)


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


class Bag(Struct):
    names: frozenset[str] = frozenset()
    colour: Colour = Colour.RED
    other: Bag | None = None
    pairs: tuple[tuple[str, int], ...] = ()


def adder(w: Bag, name: str, peer: Bag) -> Steps:
    w.names = w.names | {name}
    yield "add"
    w.colour = Colour.BLUE
    w.other = peer
    yield "paint"
    w.names = w.names | {name + "!", name * 2}
    w.pairs = w.pairs + ((name, len(w.names)),)
    yield "more"


def _make_steppers() -> list[object]:
    out = []
    for i in range(2):

        def stepper(w: Bag, k: int = i) -> Steps:  # one qualname, two functions
            w.pairs = w.pairs + (("k", k),)
            yield "k"
            w.pairs = w.pairs + (("k2", k),)
            yield "k2"

        out.append(stepper)
    return out


STEPPERS = _make_steppers()


def bag_model() -> Model:
    model = Model("bags")

    @model.setup
    def setup(s: Setup) -> Bag:
        a, b = Bag(), Bag()
        s.actor("x", adder, a, "alpha", b)
        s.actor("y", adder, b, "beta", a)
        s.actor("z", adder, a, "gamma", a)
        s.actor("k0", STEPPERS[0], b)
        s.actor("k1", STEPPERS[1], b)
        return a

    return model


def kvm_model() -> Model:
    return build_model(get_variant("v6.5"), SCENARIOS["migrate"])


MODELS = [*DEMOS.values(), bag_model()]


@pytest.mark.parametrize("model", [*MODELS, kvm_model()], ids=lambda m: m.name)
def test_round_trip(model: Model) -> None:
    system = System(model)
    codec = StateCodec(system)
    states = reachable(system)
    encodings = set()
    for state in states:
        data = codec.encode(state)
        back = codec.decode(data)
        assert back == state
        assert codec.encode(back) == data
        encodings.add(data)
    assert len(encodings) == len(states)  # distinct states, distinct bytes
    # A second System of the same model (new objects, an empty codec) decodes them equally.
    other = System(model)
    other_codec = StateCodec(other)
    for state in states[:200]:
        data = codec.encode(state)
        back = other_codec.decode(data)
        assert other_codec.encode(back) == data
        assert codec.decode(other_codec.encode(back)) == state


@pytest.mark.parametrize("model", [*MODELS, kvm_model()], ids=lambda m: m.name)
def test_part_fingerprints(model: Model) -> None:
    """The partitioned search's fingerprint: distinct for distinct states, the same in
    another System's codec, and the same when computed from the parent's parts."""
    system = System(model)
    codec = StateCodec(system)
    states = reachable(system)
    fps = {codec.part_fingerprint(s) for s in states}
    assert len(fps) == len(states) and all(0 <= fp < 1 << 64 for fp in fps)
    other = StateCodec(System(model))
    for state in states[:300]:
        fp = codec.part_fingerprint(state)
        assert other.part_fingerprint(other.decode(codec.encode(state))) == fp
        hs, total = codec.part_fingerprints(state)
        assert total == fp and len(hs) == len(state[0]) + len(state[1])
        for _a, _sc, out in system.successors(state):
            if out.kind == "ok" and out.state is not None:
                assert codec.child_fingerprints(out.state, state, hs) == codec.part_fingerprints(
                    out.state
                )


def test_functions_of_one_name_keep_apart() -> None:
    system = System(bag_model())
    codec = StateCodec(system)
    keys = {codec._function_key(f) for f in STEPPERS}  # type: ignore[arg-type]
    assert len(keys) == 2
    state = reachable(system)[-1]
    assert codec.decode(codec.encode(state)) == state


def test_frozenset_order_does_not_matter() -> None:
    system = System(bag_model())
    codec = StateCodec(system)
    # 1 and 9 share a slot in an 8-slot table: the one inserted first is iterated first.
    first, second = frozenset([1, 9]), frozenset([9, 1])
    assert list(first) != list(second) and first == second
    world, actors = system.initial
    bag = world[0]
    one = ((bag[0], bag[1], bag[2], ((first,),)), *world[1:])
    two = ((bag[0], bag[1], bag[2], ((second,),)), *world[1:])
    assert codec.encode((one, actors)) == codec.encode((two, actors))
    assert codec.fingerprint((one, actors)) == codec.fingerprint((two, actors))
    assert codec.part_fingerprint((one, actors)) == codec.part_fingerprint((two, actors))


def test_value_it_cannot_encode_is_refused() -> None:
    system = System(bag_model())
    codec = StateCodec(system)
    world, actors = system.initial
    odd = ((world[0][0], world[0][1], world[0][2], (object(),)), *world[1:])
    with pytest.raises(ModelError, match="cannot encode"):
        codec.encode((odd, actors))
    with pytest.raises(ModelError, match="cannot decode"):
        codec.decode(b"not marshal data")


def test_fingerprints_are_64_bit() -> None:
    fp = fingerprint_bytes(b"abc")
    assert 0 <= fp < 1 << 64 and fp == fingerprint_bytes(b"abc") != fingerprint_bytes(b"abd")


_PRINT_FPS = """
import sys
sys.path.insert(0, {tests!r})
from engine.test_codec import bag_model, kvm_model, reachable
from kvmsim.demos import DEMOS
from kvmsim.engine.codec import StateCodec
from kvmsim.engine.system import System
for model in [bag_model(), kvm_model(), DEMOS["philosophers"]]:
    system = System(model)
    codec = StateCodec(system)
    print(model.name, sorted(codec.fingerprint(s) for s in reachable(system, 1500)))
    print(model.name, sorted(codec.part_fingerprint(s) for s in reachable(system, 1500)))
"""


def test_same_fingerprints_in_processes_with_other_hash_seeds() -> None:
    tests = str(Path(__file__).resolve().parents[1])
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=SRC)
        proc = subprocess.run(
            [sys.executable, "-c", _PRINT_FPS.format(tests=tests)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 6
    # and the strings really hash differently in the two processes
    seeds = [
        subprocess.run(
            [sys.executable, "-c", "print(hash('alpha'))"],
            env=dict(os.environ, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert seeds[0] != seeds[1]
