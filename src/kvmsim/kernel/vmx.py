"""VMX: the APIC-access address in vmcs01, the control that enables it, VM-Enter/VM-Exit.

``vmx_set_apic_access_page_addr`` here is the v6.5 shape (the 2023 series "KVM: x86: Use
"standard" mmu_notifier hook for APIC page"); older shapes live in kvmsim.variants.
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import fail, note
from .kvm import (
    gfn_to_hva_memslot,
    gfn_to_pfn_memslot,
    id_to_memslot,
    kvm_release_pfn_clean,
    memslot_invalid,
    mmu_invalidate_retry_hva,
    read_lock,
    read_unlock,
)
from .kvm_host import (
    APIC_ACCESS_PAGE_PRIVATE_MEMSLOT,
    APIC_DEFAULT_PHYS_BASE,
    APIC_HVA,
    EXITING_GUEST_MODE,
    HVA_INDEX,
    PAGE_SHIFT,
    Vcpu,
)
from .mm import refs_held_by
from .requests import (
    KVM_REQ_APIC_PAGE_RELOAD,
    KVM_REQ_TLB_FLUSH,
    KVM_REQ_TLB_FLUSH_CURRENT,
    kvm_make_request,
)
from .tlb import vmx_flush_tlb_current

Steps = Generator[str, None, None]


def is_guest_mode(vcpu: Vcpu) -> bool:
    return vcpu.guest_mode


def secondary_exec_controls_get(vcpu: Vcpu) -> bool:
    """The cached vmcs01 SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES bit."""
    return vcpu.virtualize_apic_accesses


def secondary_exec_controls_set(vcpu: Vcpu, virtualize_apic_accesses: bool) -> None:
    if virtualize_apic_accesses and not vcpu.virtualize_apic_accesses:
        # Ghost for INV-CTL: from here a current-root flush is owed, and a reload if the
        # address is stale, until they are requested or done.
        kvm = vcpu.kvm
        assert kvm is not None and kvm.mm is not None
        owed = {"flush"}
        if vcpu.apic_access_addr != kvm.mm.pte[HVA_INDEX[APIC_HVA]]:
            owed.add("reload")
        if KVM_REQ_APIC_PAGE_RELOAD in vcpu.requests:
            owed.discard("reload")
        if vcpu.requests & {KVM_REQ_TLB_FLUSH, KVM_REQ_TLB_FLUSH_CURRENT}:
            owed.discard("flush")
        vcpu.ctl_owed = frozenset(owed)
    vcpu.virtualize_apic_accesses = virtualize_apic_accesses


def vmcs_write_apic_access_addr(vcpu: Vcpu, pfn: int) -> None:
    """vmcs_write64(APIC_ACCESS_ADDR, pfn_to_hpa(pfn)) into vmcs01."""
    vcpu.apic_access_addr = pfn
    vcpu.ctl_owed = vcpu.ctl_owed - {"reload"}  # ghost for INV-CTL


def vmx_set_apic_access_page_addr(vcpu: Vcpu) -> Steps:
    """v6.5: look the page up as a TDP fault does, and retry while an invalidation runs."""
    kvm = vcpu.kvm
    assert kvm is not None
    gfn = APIC_DEFAULT_PHYS_BASE >> PAGE_SHIFT
    if is_guest_mode(vcpu):
        vcpu.reload_vmcs01_apic_access_page = True  # deferred to nested VM-Exit
        return
    if not secondary_exec_controls_get(vcpu):
        return  # x2APIC (or APIC disabled): the page is not in use
    slot = id_to_memslot(kvm, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT)
    if slot is None or memslot_invalid(kvm, slot):
        return  # the slot is being deleted; KVM deletes it only when APICv is gone for good
    mmu_seq = kvm.mmu_invalidate_seq  # smp_rmb() pairs with kvm_mmu_invalidate_end()
    note("reload_attempt")
    yield f"mmu_seq = kvm->mmu_invalidate_seq ({mmu_seq})"
    pfn = yield from gfn_to_pfn_memslot(kvm, slot, gfn)
    if pfn is None:
        return  # is_error_noslot_pfn: no retry, KVM owns this memslot
    read_lock(kvm)
    if mmu_invalidate_retry_hva(kvm, mmu_seq, gfn_to_hva_memslot(slot, gfn)):
        kvm_make_request(KVM_REQ_APIC_PAGE_RELOAD, vcpu)
        read_unlock(kvm)
        note("reload_retry")
        kvm.reload_retried = True
        yield "mmu_invalidate_retry_hva() is true: kvm_make_request(KVM_REQ_APIC_PAGE_RELOAD)"
    else:
        vmcs_write_apic_access_addr(vcpu, pfn)
        read_unlock(kvm)
        vmx_flush_tlb_current(vcpu)
        yield f"vmcs_write64(APIC_ACCESS_ADDR, {pfn}); read_unlock; vmx_flush_tlb_current"
    kvm_release_pfn_clean(kvm, pfn)
    yield f"kvm_release_pfn_clean({pfn})"


def vmx_set_virtual_apic_mode(vcpu: Vcpu) -> None:
    """Called on an APIC mode change: the control is on only in xAPIC mode.

    Switching to xAPIC requests a reload and a current-root flush: the reload flushes only
    if the address changed, and the guest may have cached a plain mapping of the APIC gfn
    while the control was off.
    """
    kvm = vcpu.kvm
    assert kvm is not None
    if not kvm.flexpriority_enabled:
        return
    if is_guest_mode(vcpu):
        vcpu.change_vmcs01_virtual_apic_mode = True
        return
    virtualize = False
    if vcpu.apic_mode == "xapic":
        virtualize = True
        kvm_make_request(KVM_REQ_APIC_PAGE_RELOAD, vcpu)
        kvm_make_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu)
    secondary_exec_controls_set(vcpu, virtualize)


# -- VM-Enter / VM-Exit (the hardware, and where hardware-level properties are checked) ------


def vmx_vcpu_enter(vcpu: Vcpu) -> None:
    """VMLAUNCH/VMRESUME. The checks here are the properties of the entry itself."""
    if vcpu.requests and vcpu.mode != EXITING_GUEST_MODE and not vcpu.ipi_pending:
        fail(
            "INV-REQ",
            f"{vcpu.name} entered the guest with {', '.join(sorted(vcpu.requests))} pending "
            "and no IPI on its way",
        )
    assert vcpu.mm is not None
    held = refs_held_by(vcpu.mm, vcpu.name)
    if held:
        fail("INV-REF", f"{vcpu.name} entered the guest holding a reference on page {held}")
    if not vcpu.guest_mode and vcpu.reload_owed:
        fail(
            "INV-NESTED",
            f"{vcpu.name} entered L1 with a reload consumed in L2 and never redone for vmcs01",
        )
    if not vcpu.guest_mode and vcpu.virtualize_apic_accesses and vcpu.ctl_owed:
        fail(
            "INV-CTL",
            f"{vcpu.name} entered with VIRTUALIZE_APIC_ACCESSES newly on and "
            f"no {' and no '.join(sorted(vcpu.ctl_owed))} requested or done since",
        )
    vcpu.in_guest = True
    vcpu.kept_out = False


def vmx_vcpu_exit(vcpu: Vcpu, reason: str) -> None:
    vcpu.in_guest = False
    vcpu.exit_reason = reason
