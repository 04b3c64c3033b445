"""The properties kvmsim checks on the KVM model, named as in the reference's closing list.

State invariants are predicates on the machine; event properties are checked by the model at
the event they are about (VM-Enter, a page being freed, a WAIT request returning) with
``fail(NAME, ...)``; liveness is the engine's progress check on every vCPU and host thread
(they must all finish under weak fairness) plus deadlock detection. Each docstring says what
breaks in a real guest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .engine import Model
from .kernel.kvm_host import (
    APIC_GFN,
    GFNS,
    ROOT_L2,
    Kvm,
    Machine,
    Mm,
    gfn_to_hva,
    hva_to_gfn,
    spte_get,
)


@dataclass(frozen=True)
class PropertyInfo:
    name: str
    kind: str  # invariant | event | liveness | sometimes
    description: str
    default: bool = True


def _machine_parts(m: Machine) -> tuple[Kvm, Mm]:
    assert m.kvm is not None and m.mm is not None
    return m.kvm, m.mm


def inv_apic(m: Machine) -> bool:
    """A vCPU running L1 with VIRTUALIZE_APIC_ACCESSES on can reach GPA 0xfee00000 only
    through translations that target vmcs01's APIC_ACCESS_ADDR. Otherwise the guest's APIC
    MMIO reads and writes hit a plain page: interrupts are lost, the guest hangs or panics."""
    kvm, _mm = _machine_parts(m)
    for vcpu in kvm.vcpus:
        if not vcpu.in_guest or vcpu.guest_mode or not vcpu.virtualize_apic_accesses:
            continue
        if vcpu.root is None:
            continue
        spte = spte_get(kvm, vcpu.root, APIC_GFN)
        if spte is not None and spte != vcpu.apic_access_addr:
            return False
        for root, gfn, pfn in kvm.pcpus[vcpu.cpu].tlb:
            if root == vcpu.root and gfn == APIC_GFN and pfn != vcpu.apic_access_addr:
                return False
    return True


def inv_nofree(m: Machine) -> bool:
    """No vCPU running guest code holds a usable translation (SPTE or TLB entry of its root)
    to a page that was freed or now belongs to other memory, and vmcs01's APIC_ACCESS_ADDR
    never names a freed page that such a translation reaches. Otherwise the guest reads and
    writes memory the host has given to someone else: a host memory corruption."""
    kvm, mm = _machine_parts(m)
    for vcpu in kvm.vcpus:
        if not vcpu.in_guest or vcpu.root is None:
            continue
        reachable: list[tuple[int, int]] = []
        for gfn in GFNS:
            spte = spte_get(kvm, vcpu.root, gfn)
            if spte is not None:
                reachable.append((gfn, spte))
        for root, gfn, pfn in kvm.pcpus[vcpu.cpu].tlb:
            if root == vcpu.root:
                reachable.append((gfn, pfn))
        for gfn, pfn in reachable:
            if not mm.page_live[pfn] or mm.page_owner[pfn] != gfn_to_hva(gfn):
                return False
        addr = vcpu.apic_access_addr
        if (
            addr is not None
            and not vcpu.guest_mode
            and vcpu.virtualize_apic_accesses
            and any(pfn == addr for _g, pfn in reachable)
            and (not mm.page_live[addr] or mm.page_owner[addr] != gfn_to_hva(APIC_GFN))
        ):
            return False
    return True


def inv_counters(m: Machine) -> bool:
    """mmu_invalidate_in_progress and mn_active_invalidate_count never go negative, KVM
    counts no more notifier invalidations than mm has in flight, and while invalidations are
    in progress the accumulated range covers every one of them. Otherwise a racing fault or
    reload misses an invalidation and installs a stale pfn."""
    kvm, mm = _machine_parts(m)
    if kvm.mmu_invalidate_in_progress < 0 or kvm.mn_active_invalidate_count < 0:
        return False
    in_memslots = [r for r in mm.inflight if hva_to_gfn(r[0]) is not None]
    if kvm.mn_active_invalidate_count > len(mm.inflight):
        return False
    if kvm.mmu_invalidate_in_progress and kvm.mmu_invalidate_in_progress == len(in_memslots):
        start, end = kvm.mmu_invalidate_range_start, kvm.mmu_invalidate_range_end
        if start is None or end is None:
            return False
        return all(start <= s and e <= end for s, e in in_memslots)
    return True


def inv_nested(m: Machine) -> bool:
    """L2 never gets an SPTE to KVM's private APIC slot (the page is L0's, not L1's). The
    VM-Enter half of INV-NESTED (a reload consumed in L2 is redone for vmcs01) is an event
    check. Otherwise L2 could read or write L0's APIC-access page."""
    kvm, _mm = _machine_parts(m)
    return spte_get(kvm, ROOT_L2, APIC_GFN) is None


def stall_v65(m: Machine) -> bool:
    """From the moment an invalidation's reload request has been acknowledged by every vCPU
    until that invalidation ends, no vCPU in L1 with the control on runs guest code: it keeps
    retrying the reload. Expected of v6.5 (the price of the retry), not of v6.4."""
    kvm, _mm = _machine_parts(m)
    if not kvm.reload_window:
        return True
    return not any(
        v.in_guest and not v.guest_mode and v.virtualize_apic_accesses for v in kvm.vcpus
    )


def apic_used_after_move(m: Machine) -> bool:
    """The guest touched the APIC page, virtualized, after the page moved (not vacuous)."""
    kvm, _mm = _machine_parts(m)
    return bool(kvm.moved_and_used)


def reload_retried(m: Machine) -> bool:
    """A reload found an invalidation in progress and re-requested itself."""
    kvm, _mm = _machine_parts(m)
    return bool(kvm.reload_retried)


INVARIANTS: dict[str, Callable[[Machine], bool]] = {
    "INV-APIC": inv_apic,
    "INV-NOFREE": inv_nofree,
    "INV-COUNTERS": inv_counters,
    "INV-NESTED": inv_nested,
    "STALL-6.5": stall_v65,
}

SOMETIMES: dict[str, Callable[[Machine], bool]] = {
    "APIC page used after it moved": apic_used_after_move,
    "a reload retried": reload_retried,
}

EVENT_PROPERTIES = {
    "INV-REQ": "A vCPU never VM-Enters with a request pending unless an IPI is on its way "
    "(the request was made after its late check). Otherwise the request waits for an "
    "unrelated exit: a TLB flush or an APIC reload is skipped while the guest runs.",
    "INV-WAIT": "When a KVM_REQUEST_WAIT request returns, no vCPU runs guest code without "
    "having seen it; when range_start returns, no vCPU running guest code still reaches the "
    "range through an SPTE or TLB entry. Otherwise the host frees or moves pages the guest "
    "still uses.",
    "INV-REF": "Every page reference KVM takes is dropped exactly once, and none is held "
    "across VM-Enter. A leak pins memory (and blocks migration forever); a double put frees "
    "a page in use.",
    "INV-CTL": "When VIRTUALIZE_APIC_ACCESSES goes 0->1, a reload and a current-root flush "
    "are requested before the next VM-Enter. Otherwise the guest uses a stale APIC address "
    "or a plain TLB entry for the APIC page.",
    "LIVE-FLUSH": "No TLB entry or SPTE on any CPU maps a page at the moment it is freed. "
    "Otherwise a guest can read or write a freed page.",
}

LIVENESS = {
    "LIVE-RETRY": "Every vCPU and host thread finishes under weak fairness: no livelock "
    "(a reload retrying forever, a vCPU bailing forever) and no deadlock (an invalidator "
    "waiting for an acknowledgement from a vCPU that waits for it).",
}


def catalogue() -> list[PropertyInfo]:
    out = [
        PropertyInfo(name, "invariant", (f.__doc__ or "").split("\n\n")[0].replace("\n", " "))
        for name, f in INVARIANTS.items()
    ]
    out = [
        PropertyInfo(p.name, p.kind, " ".join(p.description.split()), p.name != "STALL-6.5")
        for p in out
    ]
    out += [PropertyInfo(n, "event", d) for n, d in EVENT_PROPERTIES.items()]
    out += [PropertyInfo(n, "liveness", d) for n, d in LIVENESS.items()]
    out += [
        PropertyInfo(n, "sometimes", " ".join((f.__doc__ or "").split()), default=False)
        for n, f in SOMETIMES.items()
    ]
    return out


def describe(name: str) -> str:
    for info in catalogue():
        if name == info.name or name.startswith("progress: ") and info.name == "LIVE-RETRY":
            return info.description
    if name == "deadlock":
        return LIVENESS["LIVE-RETRY"]
    return ""


def install(model: Model, extra: tuple[str, ...] = ()) -> None:
    """Register the default invariants (plus any extra ones by name) on model."""
    for name, func in INVARIANTS.items():
        if name == "STALL-6.5" and name not in extra:
            continue
        model.invariant(name, describe(name))(func)
    for name, func in SOMETIMES.items():
        model.sometimes(name, describe(name), required=False)(func)
