"""The primary MMU's side of the MMU-notifier chain (mm/mmu_notifier.c).

KVM is the only subscriber. ``invalidate_range_start`` and ``_end`` bracket every change to
the VMM's page tables; ``invalidate_range`` (a separate op until v6.6, used by KVM in
v5.8-v6.4) fires after PTEs change and before the pages are freed, and immediately before
``invalidate_range_end`` (``mn_hlist_invalidate_end`` calls it first).
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import fail
from .kvm import (
    kvm_mmu_notifier_invalidate_range,
    kvm_mmu_notifier_invalidate_range_end,
    kvm_mmu_notifier_invalidate_range_start,
)
from .kvm_host import GFNS, Mm, gfn_to_hva, spte_get

Steps = Generator[str, None, None]


def mmu_notifier_invalidate_range_start(mm: Mm, start: int, end: int) -> Steps:
    mm.inflight = mm.inflight + ((start, end),)
    kvm = mm.kvm
    assert kvm is not None
    yield from kvm_mmu_notifier_invalidate_range_start(kvm, start, end)
    check_secondary_mmu_quiesced(mm, start, end)


def mmu_notifier_invalidate_range_end(mm: Mm, start: int, end: int) -> Steps:
    """mn_hlist_invalidate_end(only_end=false): ->invalidate_range, then ->invalidate_range_end."""
    kvm = mm.kvm
    assert kvm is not None
    if kvm_mmu_notifier_invalidate_range is not None:
        yield from kvm_mmu_notifier_invalidate_range(kvm, start, end)
    yield from kvm_mmu_notifier_invalidate_range_end(kvm, start, end)
    inflight = list(mm.inflight)
    inflight.remove((start, end))
    mm.inflight = tuple(inflight)


def mmu_notifier_invalidate_range(mm: Mm, start: int, end: int) -> Steps:
    """From tlb_flush_mmu_tlbonly() / ptep_clear_flush_notify(): before pages are freed."""
    kvm = mm.kvm
    assert kvm is not None
    if kvm_mmu_notifier_invalidate_range is not None:
        yield from kvm_mmu_notifier_invalidate_range(kvm, start, end)


def check_secondary_mmu_quiesced(mm: Mm, start: int, end: int) -> None:
    """INV-WAIT (second half): when range_start returns, no vCPU running guest code can
    still reach the pages of [start, end) through an SPTE or a TLB entry of its root."""
    kvm = mm.kvm
    assert kvm is not None
    for vcpu in kvm.vcpus:
        if not vcpu.in_guest or vcpu.root is None:
            continue
        pcpu = kvm.pcpus[vcpu.cpu]
        for gfn in GFNS:
            hva = gfn_to_hva(gfn)
            if hva is None or not start <= hva < end:
                continue
            if spte_get(kvm, vcpu.root, gfn) is not None:
                fail(
                    "INV-WAIT",
                    f"range_start returned while {vcpu.name} runs with an SPTE for gfn {gfn:#x}",
                )
            for root, tgfn, pfn in pcpu.tlb:
                if root == vcpu.root and tgfn == gfn:
                    fail(
                        "INV-WAIT",
                        f"range_start returned while {vcpu.name} runs with a TLB entry "
                        f"gfn {gfn:#x} -> page {pfn} that predates the zap",
                    )
