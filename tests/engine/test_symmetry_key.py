"""The symmetry reduction's canonical key is a function of the orbit, and only of the orbit.

On random reachable states of symmetric models whose members own two objects, point at each
other's objects, hold references in locals across a yield, write their actor names into
shared state, carry identity fields and sit in an unordered tuple: the key is unchanged by
every permutation of the members, lies in the state's own orbit, and two states share a key
exactly when one is a permutation of the other. Then the search on those models: a bug is
still found, and the fixed model's reduced count is exactly the number of orbits among the
full search's states.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmsim.engine import (
    Model,
    Options,
    Setup,
    Struct,
    await_,
    check,
    choose,
    current_actor,
    replay,
)
from kvmsim.engine.codec import StateCodec
from kvmsim.engine.orbit_fp import OrbitFingerprint
from kvmsim.engine.symmetry import SymmetryReducer
from kvmsim.engine.system import State, System
from kvmsim.engine.world import ModelError

Steps = Generator[str, None, None]


class Node(Struct):
    name: str = "n0"
    idx: int = 0
    val: int = 0
    peer: Node | None = None  # another member's node (or its own)


class Box(Struct):
    count: int = 0


class Hub(Struct):
    nodes: tuple[Node, ...] = ()
    holder: Node | None = None
    last: str = ""  # the actor name of the last one to leave
    inside: int = 0


def member(hub: Hub, me: Node, box: Box, locked: bool) -> Steps:
    other = me
    while box.count < 1:
        what = choose((0, 1, 2))
        if what == 0:
            await_(me.val == 0)
            me.val = 1
            yield "bump"
        elif what == 1:
            await_(me.peer is None)
            other = choose(hub.nodes)  # a reference held across the next yield
            yield "pick"
            me.peer = other
            yield "point"
        else:
            if locked:
                await_(hub.holder is None)
                hub.holder = me
                yield "lock"
            else:
                await_(hub.holder is None)
                yield "test"
                hub.holder = me
                yield "set"
            hub.inside += 1
            yield "enter"
            hub.inside -= 1
            hub.holder = None
            hub.last = current_actor()
            box.count += 1
            yield "leave"


def sym_model(n: int, locked: bool = True) -> Model:
    model = Model(f"symmetric x{n} {'locked' if locked else 'racy'}")

    @model.setup
    def setup(s: Setup) -> Hub:
        nodes = tuple(Node(name=f"m{i}", idx=i) for i in range(n))
        boxes = [Box() for _ in range(n)]
        hub = Hub(nodes=nodes)
        for node, box in zip(nodes, boxes):
            s.actor(node.name, member, hub, node, box, locked)
        s.symmetric(
            [(node.name, (node, box)) for node, box in zip(nodes, boxes)],
            unordered=((hub, "nodes"),),
            identity=("name", "idx"),
        )
        return hub

    @model.invariant("one inside")
    def one_inside(hub: Hub) -> bool:
        return hub.inside <= 1

    return model


SYSTEMS = {n: System(sym_model(n)) for n in (2, 3)}
REDUCERS = {n: SymmetryReducer(system) for n, system in SYSTEMS.items()}
ORBIT_FPS = {n: OrbitFingerprint(red, StateCodec(red.system)) for n, red in REDUCERS.items()}


def walk(system: System, seed: int, length: int) -> State:
    """A reachable state: length random steps from the initial state."""
    rng = random.Random(seed)
    state = system.initial
    for _ in range(length):
        nexts = [o.state for _a, _c, o in system.successors(state) if o.state is not None]
        if not nexts:
            break
        state = rng.choice(nexts)
    system.reload()
    return state


def orbit(red: SymmetryReducer, state: State) -> set[State]:
    n = red.groups[0].size
    return {red.permute(state, [p], sort=True) for p in permutations(range(n))}


walks = st.tuples(st.integers(0, 2**32), st.integers(0, 14))


@settings(deadline=None, max_examples=60)
@given(st.sampled_from([2, 3]), walks)
def test_key_is_invariant_under_every_permutation(n: int, w: tuple[int, int]) -> None:
    red = REDUCERS[n]
    state = walk(SYSTEMS[n], *w)
    key = red.key(state)
    images = orbit(red, state)
    assert key in images  # the key is a renaming of the state itself
    for image in images:
        assert red.key(image) == key


@settings(deadline=None, max_examples=80)
@given(st.sampled_from([2, 3]), walks, walks)
def test_keys_are_equal_exactly_for_permuted_states(
    n: int, a: tuple[int, int], b: tuple[int, int]
) -> None:
    red = REDUCERS[n]
    s, t = walk(SYSTEMS[n], *a), walk(SYSTEMS[n], *b)
    assert (red.key(s) == red.key(t)) is (t in orbit(red, s))


@settings(deadline=None, max_examples=30)
@given(walks)
def test_permuted_images_of_tied_members_get_one_key(w: tuple[int, int]) -> None:
    """Members with equal own data tie on their signatures; the key still settles on one
    representative however they are ordered."""
    red = REDUCERS[3]
    state = walk(SYSTEMS[3], *w)
    keys = {red.key(image) for image in orbit(red, state)}
    assert len(keys) == 1


@settings(deadline=None, max_examples=80)
@given(st.sampled_from([2, 3]), walks, walks)
def test_orbit_fingerprints_name_orbits(n: int, a: tuple[int, int], b: tuple[int, int]) -> None:
    """The fingerprint store's name for an orbit, computed without building an image: equal
    for every permutation of a state, and different for states of different orbits (no
    collision is expected among a few hundred states)."""
    red, fp = REDUCERS[n], ORBIT_FPS[n]
    s, t = walk(SYSTEMS[n], *a), walk(SYSTEMS[n], *b)
    assert {fp(image) for image in orbit(red, s)} == {fp(s)}
    assert (fp(s) == fp(t)) is (t in orbit(red, s))


@settings(deadline=None, max_examples=40)
@given(st.sampled_from([2, 3]), walks)
def test_orbit_fingerprint_is_the_least_part_fingerprint_of_the_sorted_images(
    n: int, w: tuple[int, int]
) -> None:
    """It equals the codec's part fingerprint of one of the state's images, the least over
    the images whose members are sorted by signature: the same name the store would give
    the canonical state if it were built."""
    red, fp = REDUCERS[n], ORBIT_FPS[n]
    state = walk(SYSTEMS[n], *w)
    group = red.groups[0]
    sigs = [red.signature(state, group, i) for i in range(n)]
    images = [
        red.permute(state, [perm], sort=True)
        for perm in permutations(range(n))
        if all(sigs[i] == sorted(sigs)[perm[i]] for i in range(n))
    ]
    codec = fp.codec
    assert fp(state) == min(codec.part_fingerprint(image) for image in images)


def test_a_changed_identity_field_is_refused() -> None:
    """Identity fields are declared never to change (the orbit fingerprint takes them from
    the initial state): a member whose identity field changed is a model error."""
    system = SYSTEMS[2]
    world, actors = system.initial
    slot = REDUCERS[2].groups[0].slots[0][0]
    idx = system.world.fields[slot].index("idx")
    bad = list(world)
    bad[slot] = tuple(7 if k == idx else v for k, v in enumerate(world[slot]))
    fp = OrbitFingerprint(REDUCERS[2], StateCodec(system))
    with pytest.raises(ModelError, match=r"idx is declared an identity field but changed"):
        fp((tuple(bad), actors))


def test_initial_state_has_all_members_tied() -> None:
    red = REDUCERS[3]
    initial = SYSTEMS[3].initial
    sigs = [red.signature(initial, red.groups[0], i) for i in range(3)]
    assert len(set(sigs)) == 1
    assert red.key(initial) == initial


@pytest.mark.parametrize("n", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_reduced_count_is_the_number_of_orbits(n: int) -> None:
    model = sym_model(n)
    full = check(model, Options(liveness=False))
    red = check(model, Options(liveness=False, symmetry=True))
    fps = check(model, Options(liveness=False, symmetry=True, store="fingerprint"))
    assert full.verdict == red.verdict == fps.verdict == "holds"
    assert full.exhaustive and red.exhaustive and fps.exhaustive
    assert fps.stats.states == red.stats.states  # the store names orbits alike
    system = System(model)
    states = _reachable(system)
    assert len(states) == full.stats.states
    reducer = SymmetryReducer(system)
    orbits = {reducer.key(s) for s in states}
    assert red.stats.states == len(orbits) < full.stats.states


def _reachable(system: System) -> set[State]:
    seen = {system.initial}
    todo = [system.initial]
    while todo:
        state = todo.pop()
        for _a, _c, out in system.successors(state):
            if out.state is not None and out.state not in seen:
                seen.add(out.state)
                todo.append(out.state)
    return seen


@pytest.mark.parametrize("n", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_racy_members_are_caught_with_symmetry(n: int) -> None:
    model = sym_model(n, locked=False)
    full = check(model, Options(liveness=False))
    red = check(model, Options(liveness=False, symmetry=True))
    fps = check(model, Options(liveness=False, symmetry=True, store="fingerprint"))
    assert full.violated() == red.violated() == fps.violated() == ["one inside"]
    trace = red.violation("one inside").trace
    assert trace is not None
    assert len(trace) == len(full.violation("one inside").trace or [])
    replayed, _ = replay(System(model), trace.path)
    assert len(replayed) == len(trace)
