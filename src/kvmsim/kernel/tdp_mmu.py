"""The TDP MMU: zapping SPTEs, the EPT-violation path, loading a root (mmu.c, tdp_mmu.c).

Simplifications (docs/model.md): one SPTE per (root, gfn), no page-table levels; the shadow
MMU's rmaps are not modelled (TDP MMU only; L2's EPT02 root is zapped like any root of
address space 0); zapping does not yield (may_block is ignored); L1's EPT12 is the identity,
so L2 sees L1's gfns.
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import note
from .kvm import (
    gfn_to_hva_memslot,
    gfn_to_pfn_memslot,
    kvm_flush_remote_tlbs,
    kvm_mmu_invalidate_begin,
    kvm_mmu_invalidate_end,
    kvm_release_pfn_clean,
    memslot_invalid,
    mmu_invalidate_retry_hva,
    read_lock,
    read_unlock,
    write_lock,
    write_unlock,
)
from .kvm_host import (
    ADDRESS_SPACES,
    APIC_ACCESS_PAGE_PRIVATE_MEMSLOT,
    ROOT_AS,
    ROOT_L1,
    ROOT_L2,
    ROOT_SMM,
    ROOTS,
    Kvm,
    Vcpu,
    memslot_of_gfn,
    spte_get,
    spte_set,
)
from .requests import KVM_REQ_APIC_PAGE_RELOAD, kvm_make_all_cpus_request
from .tlb import vmx_flush_tlb_current

Steps = Generator[str, None, None]
GfnRange = tuple[int, str, int]  # (as_id, slot id, gfn)

RET_PF_FIXED = "RET_PF_FIXED"
RET_PF_RETRY = "RET_PF_RETRY"
RET_PF_EMULATE = "RET_PF_EMULATE"


def kvm_tdp_mmu_zap_leafs(kvm: Kvm, as_id: int, gfn: int, flush: bool) -> bool:
    """Zap the present leaf SPTE for gfn in every root of the address space, valid or not."""
    for root in ROOTS:
        if ROOT_AS[root] == as_id and spte_get(kvm, root, gfn) is not None:
            spte_set(kvm, root, gfn, None)
            flush = True
    return flush


def kvm_tdp_mmu_unmap_gfn_range(kvm: Kvm, gfn_range: GfnRange, flush: bool) -> bool:
    as_id, _slot, gfn = gfn_range
    return kvm_tdp_mmu_zap_leafs(kvm, as_id, gfn, flush)


def kvm_unmap_gfn_range(kvm: Kvm, gfn_range: GfnRange) -> Generator[str, None, bool]:
    """v6.5: zap, then ask every vCPU to reload the APIC page if this is KVM's APIC slot.

    Runs under the write lock, after kvm_mmu_invalidate_begin and before the caller's remote
    TLB flush. With SMM the slot exists in both address spaces: two broadcasts.
    """
    flush = False
    flush = kvm_tdp_mmu_unmap_gfn_range(kvm, gfn_range, flush)
    yield f"kvm_tdp_mmu_zap_leafs(as {gfn_range[0]}, gfn {gfn_range[2]:#x})"
    if kvm.flexpriority_enabled and gfn_range[1] == APIC_ACCESS_PAGE_PRIVATE_MEMSLOT:
        yield from kvm_make_all_cpus_request(kvm, KVM_REQ_APIC_PAGE_RELOAD)
    return flush


def kvm_zap_gfn_range(kvm: Kvm, gfn: int) -> Steps:
    """Zap one gfn in every address space, bracketed by begin/end over the whole hva space."""
    write_lock(kvm)
    kvm_mmu_invalidate_begin(kvm, 0, 2**64 - 1)
    flush = False
    for as_id in ADDRESS_SPACES:
        flush = kvm_tdp_mmu_zap_leafs(kvm, as_id, gfn, flush)
    yield f"kvm_zap_gfn_range({gfn:#x}): write_lock, invalidate_begin, zap"
    if flush:
        yield from kvm_flush_remote_tlbs(kvm)
    kvm_mmu_invalidate_end(kvm, 0, 2**64 - 1)
    write_unlock(kvm)
    yield "kvm_zap_gfn_range: invalidate_end, write_unlock"


# -- roots ------------------------------------------------------------------------------


def root_for_role(vcpu: Vcpu) -> str:
    if vcpu.guest_mode:
        return ROOT_L2
    return ROOT_SMM if vcpu.smm else ROOT_L1


def kvm_mmu_reload(vcpu: Vcpu) -> None:
    if vcpu.root is None:
        kvm_mmu_load(vcpu)


def kvm_mmu_load(vcpu: Vcpu) -> None:
    """Find (TDP MMU: reuse) the root of the vCPU's role under the write lock, then flush it.

    The flush on load is what lets roots be dropped without a flush.
    """
    kvm = vcpu.kvm
    assert kvm is not None
    write_lock(kvm)
    vcpu.root = root_for_role(vcpu)
    write_unlock(kvm)
    vmx_flush_tlb_current(vcpu)


def kvm_mmu_reset_context(vcpu: Vcpu) -> None:
    """Unload every root: the next kvm_mmu_reload picks the root of the new role."""
    vcpu.root = None


# -- the EPT-violation path ----------------------------------------------------------------


def kvm_tdp_mmu_page_fault(vcpu: Vcpu, gfn: int) -> Generator[str, None, str]:
    """kvm_faultin_pfn (sequence first, then GUP), then install under mmu_lock unless stale."""
    kvm = vcpu.kvm
    assert kvm is not None
    mmu_seq = kvm.mmu_invalidate_seq  # smp_rmb() pairs with kvm_mmu_invalidate_end
    slot = memslot_of_gfn(gfn)
    if slot is None:
        return RET_PF_EMULATE  # no slot: emulated MMIO
    if memslot_invalid(kvm, slot):
        return RET_PF_RETRY
    if slot == APIC_ACCESS_PAGE_PRIVATE_MEMSLOT:
        if vcpu.guest_mode:
            return RET_PF_EMULATE  # private slots are invisible to L2: treated as no slot
        if not kvm.apicv_active:
            return RET_PF_EMULATE  # APICv inhibited: emulate, never map the APIC page
    yield f"kvm_faultin_pfn(gfn {gfn:#x}): mmu_seq = {mmu_seq}"
    pfn = yield from gfn_to_pfn_memslot(kvm, slot, gfn)
    if pfn is None:
        return RET_PF_RETRY  # transient GUP failure: the access faults again
    hva = gfn_to_hva_memslot(slot, gfn)
    root = vcpu.root
    assert root is not None
    read_lock(kvm)
    if is_page_fault_stale(kvm, mmu_seq, hva):
        ret = RET_PF_RETRY
        note("fault_retry")
    else:
        spte_set(kvm, root, gfn, pfn)
        ret = RET_PF_FIXED
    read_unlock(kvm)
    outcome = "stale: retry" if ret == RET_PF_RETRY else f"install SPTE -> {pfn}"
    yield f"read_lock(mmu_lock); {outcome}"
    kvm_release_pfn_clean(kvm, pfn)
    yield f"kvm_release_pfn_clean({pfn})"
    return ret


def is_page_fault_stale(kvm: Kvm, mmu_seq: int, hva: int) -> bool:
    return mmu_invalidate_retry_hva(kvm, mmu_seq, hva)
