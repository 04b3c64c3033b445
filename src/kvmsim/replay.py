"""Replay tokens: a counterexample in one copyable word, and its replay.

A token is ``kvmsim1:`` followed by the base64url (unpadded) form of zlib-compressed JSON:

``{"m": {model reference}, "f": fingerprint, "p": property, "k": kind, "t": [[actor,
choice, ...], ...], "l": loop start or null}``

The model reference says how to rebuild the model: ``{"kind": "kvm", "variant": V,
"scenario": S, "extra": [P, ...]}`` (V a built-in variant name or ``FILE.py[:NAME]``),
``{"kind": "demo", "name": N}`` or ``{"kind": "file", "path": FILE.py, "name": NAME or
null}``. The fingerprint (``kvmsim.fingerprint``) must match the rebuilt model's, so a token
never replays on a model built from different code. The path is the search's: for each
step, the actor's index and the choices it made; replaying it from the initial state
reproduces the trace exactly, and the violation is checked again at its end.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from .engine import Model, ModelError, System, Violation
from .engine.trace import Path, Trace, replay

PREFIX = "kvmsim1:"
MAX_TOKEN = 1 << 20  # characters; a longer one is refused before it is decompressed
MAX_JSON = 1 << 24  # bytes of decompressed JSON


class TokenError(ValueError):
    """A token that cannot be used: corrupt, or for a model built from different code."""


@dataclass(frozen=True)
class ModelRef:
    """How to rebuild a checked model: the built-in KVM model, a demo, or a model file."""

    kind: str  # kvm | demo | file
    name: str  # kvm: the variant (NAME or FILE.py[:NAME]); demo: its name; file: FILE.py
    scenario: str = ""  # kvm
    model: str | None = None  # file: the model's NAME, when the file needed one
    extra: tuple[str, ...] = field(default=())  # kvm: non-default properties checked

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "kvm":
            return {
                "kind": "kvm",
                "variant": self.name,
                "scenario": self.scenario,
                "extra": list(self.extra),
            }
        if self.kind == "demo":
            return {"kind": "demo", "name": self.name}
        return {"kind": "file", "path": self.name, "name": self.model}

    @staticmethod
    def from_dict(doc: Any) -> ModelRef:
        if not isinstance(doc, dict):
            raise TokenError("no model reference")
        kind = doc.get("kind")
        if kind == "kvm":
            variant, scenario, extra = doc.get("variant"), doc.get("scenario"), doc.get("extra")
            if not (isinstance(variant, str) and isinstance(scenario, str)):
                raise TokenError("bad KVM model reference")
            if not (isinstance(extra, list) and all(isinstance(p, str) for p in extra)):
                raise TokenError("bad KVM model reference")
            return ModelRef("kvm", variant, scenario, extra=tuple(extra))
        if kind == "demo" and isinstance(doc.get("name"), str):
            return ModelRef("demo", doc["name"])
        if kind == "file" and isinstance(doc.get("path"), str):
            name = doc.get("name")
            if name is not None and not isinstance(name, str):
                raise TokenError("bad model file reference")
            return ModelRef("file", doc["path"], model=name)
        raise TokenError(f"unknown model reference {kind!r}")

    def describe(self) -> str:
        """The model in words: ``variant v6.5 on scenario migrate``, ``demo broken-lock``,
        ``model file m.py:NAME``."""
        if self.kind == "kvm":
            extra = f" (with {', '.join(self.extra)})" if self.extra else ""
            return f"variant {self.name} on scenario {self.scenario}{extra}"
        if self.kind == "demo":
            return f"demo {self.name}"
        return f"model file {self.name}" + (f":{self.model}" if self.model else "")


@dataclass(frozen=True)
class Token:
    ref: ModelRef
    fingerprint: str
    prop: str
    kind: str
    path: Path
    loop_start: int | None = None

    def encode(self) -> str:
        doc = {
            "m": self.ref.as_dict(),
            "f": self.fingerprint,
            "p": self.prop,
            "k": self.kind,
            "t": [[actor, *choices] for actor, choices in self.path],
            "l": self.loop_start,
        }
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        packed = base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")
        return PREFIX + packed

    @staticmethod
    def decode(text: str) -> Token:
        """Parse a token; anything wrong with it raises TokenError with a short reason."""
        text = text.strip()
        if not text.startswith(PREFIX):
            raise TokenError(f"not a kvmsim replay token (it should start with {PREFIX!r})")
        body = text[len(PREFIX) :]
        if len(body) > MAX_TOKEN:
            raise TokenError("the token is too long")
        try:
            packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            inflater = zlib.decompressobj()
            raw = inflater.decompress(packed, MAX_JSON)
            if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
                raise TokenError("the token is corrupt or truncated")
            doc = json.loads(raw.decode())
        except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError) as exc:
            if isinstance(exc, TokenError):
                raise
            raise TokenError("the token is corrupt or truncated") from None
        return Token._from_doc(doc)

    @staticmethod
    def _from_doc(doc: Any) -> Token:
        if not isinstance(doc, dict):
            raise TokenError("the token is corrupt")
        fp, prop, kind, steps, loop = (doc.get(k) for k in ("f", "p", "k", "t", "l"))
        if not (isinstance(fp, str) and isinstance(prop, str) and isinstance(kind, str)):
            raise TokenError("the token is corrupt")
        if not isinstance(steps, list) or not all(
            isinstance(s, list) and s and all(_is_index(x) for x in s) for s in steps
        ):
            raise TokenError("the token's path is corrupt")
        if loop is not None and not (_is_index(loop) and loop <= len(steps)):
            raise TokenError("the token's loop start is corrupt")
        path: Path = [(s[0], tuple(s[1:])) for s in steps]
        return Token(ModelRef.from_dict(doc.get("m")), fp, prop, kind, path, loop)


def _is_index(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def make_token(ref: ModelRef, fingerprint: str, violation: Violation) -> str | None:
    """The violation's token, or None when it has no trace to replay."""
    trace = violation.trace
    if trace is None:
        return None
    return Token(
        ref, fingerprint, violation.prop, violation.kind, list(trace.path), trace.loop_start
    ).encode()


def rebuild(model: Model, token: Token, system: System | None = None) -> Violation:
    """Replay the token's path on model and check that it still violates its property.

    The caller has checked the fingerprint. Raises TokenError when the path does not apply
    (an actor or a choice the model does not have) or no longer ends in the violation.
    """
    sys_ = system if system is not None else System(model)
    n = len(sys_.actors)
    for actor, _choices in token.path:
        if actor >= n:
            raise TokenError(f"the token's path names actor {actor}; the model has {n}")
    try:
        trace, state = replay(sys_, token.path, token.loop_start)
    except ModelError as exc:
        raise TokenError(f"the token's path does not replay: {exc}") from None
    except IndexError:
        raise TokenError("the token's path does not replay: a choice out of range") from None
    if len(trace.steps) != len(token.path):
        raise TokenError(
            f"the token's path does not replay: it stops at step {len(trace.steps)} of "
            f"{len(token.path)}"
        )
    message = _violation_message(sys_, token, trace, state)
    descriptions = {p.name: p.description for p in model.properties}
    return Violation(token.prop, token.kind, message, trace, descriptions.get(token.prop, ""))


def _violation_message(sys_: System, token: Token, trace: Trace, state: Any) -> str:
    """What the search said about the violation, worked out again from the replayed trace
    (the same words as engine.explore), or TokenError if it is not violated there."""
    prop, kind = token.prop, token.kind
    broken = TokenError(f"the token's trace does not end in a violation of {prop!r}")
    if kind == "invariant":
        if prop not in [p for p, _ in sys_.check_invariants(state)]:
            raise broken
        return f"invariant {prop!r} is false"
    if kind in ("property", "assertion", "error"):
        if not token.path:
            raise broken
        actor, choices = token.path[-1]
        out = sys_.step_with(_state_after(sys_, token.path[:-1]), actor, choices)
        if out.kind == "ok":
            for p, message in out.failures:  # a completed step that reported fail()
                if p == prop and kind == "property":
                    return message
            raise broken
        if out.kind != kind or (kind == "property" and out.prop != prop):
            raise broken
        return out.message
    if kind == "deadlock":
        if any(o.kind != "blocked" for _, _, o in sys_.successors(state)):
            raise broken
        stuck = sys_.unfinished(state)
        if not stuck:
            raise broken
        names = sys_.names()
        return "no actor can move; waiting: " + ", ".join(
            f"{n} at {sys_.location(state, names.index(n))}" for n in stuck
        )
    if kind == "progress":
        name = prop.removeprefix("progress: ")
        if token.loop_start is not None:
            if _state_after(sys_, token.path[: token.loop_start]) != state:
                raise broken
            return (
                f"{name} can be starved forever under weak fairness (a fair cycle in which "
                f"it never finishes)"
            )
        if name not in sys_.names():
            raise broken
        return (
            f"{name} waits forever: it has not finished and no actor can move "
            f"(at {sys_.location(state, sys_.names().index(name))})"
        )
    raise TokenError(f"the token names an unknown kind of violation {kind!r}")


def _state_after(sys_: System, path: Path) -> Any:
    state = sys_.initial
    for actor, choices in path:
        out = sys_.step_with(state, actor, choices)
        assert out.state is not None
        state = out.state
    return state
