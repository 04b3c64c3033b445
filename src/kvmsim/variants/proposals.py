"""Design alternatives the 2023 reviewers asked about, each a patch on v6.5.

* ``pin-v6.5``: keep the page pinned for the VM's life (why not pin it?).
* ``bail-immediately``: the reload tells vcpu_enter_guest to bail at once instead of
  re-requesting itself (why re-request?).
* ``bail-and-rerequest``: re-request *and* bail at once, skipping the rest of this pass's
  preparation (the cheaper reading of the same question).
* ``skip-notifier-flush``: kvm_unmap_gfn_range reports "no flush needed" when it zapped only
  the APIC-access gfn, relying on the reload's own flush (is the notifier's flush redundant?).
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import note
from ..kernel.kvm import (
    gfn_to_hva_memslot,
    gfn_to_pfn_memslot,
    id_to_memslot,
    kvm_release_pfn_clean,
    memslot_invalid,
    mmu_invalidate_retry_hva,
    read_lock,
    read_unlock,
)
from ..kernel.kvm_host import (
    APIC_ACCESS_PAGE_PRIVATE_MEMSLOT,
    APIC_DEFAULT_PHYS_BASE,
    APIC_HVA,
    HVA_INDEX,
    IN_GUEST_MODE,
    OUTSIDE_GUEST_MODE,
    PAGE_SHIFT,
    Kvm,
    Vcpu,
    replace,
)
from ..kernel.mm import get_page
from ..kernel.requests import (
    KVM_REQ_APIC_PAGE_RELOAD,
    KVM_REQ_APICV_UPDATE,
    KVM_REQ_TLB_FLUSH,
    KVM_REQ_TLB_FLUSH_CURRENT,
    kvm_check_request,
    kvm_make_all_cpus_request,
    kvm_make_request,
    kvm_request_pending,
)
from ..kernel.tdp_mmu import (
    GfnRange,
    kvm_mmu_reload,
    kvm_tdp_mmu_unmap_gfn_range,
)
from ..kernel.tlb import kvm_vcpu_flush_tlb_all, kvm_vcpu_flush_tlb_current, vmx_flush_tlb_current
from ..kernel.vcpu import (
    guest_run,
    kvm_vcpu_exit_request,
    kvm_vcpu_update_apicv,
    local_irq_enable,
    vmx_handle_exit,
)
from ..kernel.vmx import (
    is_guest_mode,
    secondary_exec_controls_get,
    vmcs_write_apic_access_addr,
    vmx_vcpu_enter,
)
from . import Variant, register

# -- pin-v6.5 ------------------------------------------------------------------------------

pin_v6_5 = register(
    Variant(
        "pin-v6.5",
        base="v6.5",
        description="v6.5 with the APIC-access page pinned for the VM's life (a reference is "
        "kept in kvm->arch.apic_access_page, as before v3.18)",
    )
)


@pin_v6_5.override
def kvm_alloc_apic_access_page(kvm: Kvm) -> None:
    mm = kvm.mm
    assert mm is not None
    page = mm.pte[HVA_INDEX[APIC_HVA]]
    assert isinstance(page, int)
    get_page(mm, page)  # kept: nobody can migrate or reclaim the page
    mm.pinned = replace(mm.pinned, page, True)
    kvm.apic_access_page = page


# -- bail-immediately and bail-and-rerequest -------------------------------------------------

bail_immediately = register(
    Variant(
        "bail-immediately",
        base="v6.5",
        description="v6.5, but a reload that sees an invalidation in progress returns 'bail' "
        "and vcpu_enter_guest bails at once, without re-requesting the reload",
    )
)
bail_and_rerequest = register(
    Variant(
        "bail-and-rerequest",
        base="bail-immediately",
        description="bail-immediately, but the reload is re-requested before bailing",
    )
)


@bail_immediately.override
def vmx_set_apic_access_page_addr(vcpu: Vcpu) -> Generator[str, None, bool]:
    kvm = vcpu.kvm
    assert kvm is not None
    gfn = APIC_DEFAULT_PHYS_BASE >> PAGE_SHIFT
    if is_guest_mode(vcpu):
        vcpu.reload_vmcs01_apic_access_page = True
        return False
    if not secondary_exec_controls_get(vcpu):
        return False
    slot = id_to_memslot(kvm, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT)
    if slot is None or memslot_invalid(kvm, slot):
        return False
    mmu_seq = kvm.mmu_invalidate_seq
    note("reload_attempt")
    yield f"mmu_seq = kvm->mmu_invalidate_seq ({mmu_seq})"
    pfn = yield from gfn_to_pfn_memslot(kvm, slot, gfn)
    if pfn is None:
        return False
    bail = False
    read_lock(kvm)
    if mmu_invalidate_retry_hva(kvm, mmu_seq, gfn_to_hva_memslot(slot, gfn)):
        bail = reload_retry_action(vcpu)
        read_unlock(kvm)
        note("reload_retry")
        kvm.reload_retried = True
        yield "mmu_invalidate_retry_hva() is true: bail out of vcpu_enter_guest"
    else:
        vmcs_write_apic_access_addr(vcpu, pfn)
        read_unlock(kvm)
        vmx_flush_tlb_current(vcpu)
        yield f"vmcs_write64(APIC_ACCESS_ADDR, {pfn}); read_unlock; vmx_flush_tlb_current"
    kvm_release_pfn_clean(kvm, pfn)
    yield f"kvm_release_pfn_clean({pfn})"
    return bail


@bail_immediately.define
def reload_retry_action(vcpu: Vcpu) -> bool:
    """What the retry path does besides bailing: nothing (the proposal as asked)."""
    return True


def rerequest_then_bail(vcpu: Vcpu) -> bool:
    kvm_make_request(KVM_REQ_APIC_PAGE_RELOAD, vcpu)
    return True


bail_and_rerequest.set("reload_retry_action", rerequest_then_bail)


@bail_immediately.override
def kvm_vcpu_reload_apic_access_page(vcpu: Vcpu) -> Generator[str, None, bool]:
    kvm = vcpu.kvm
    assert kvm is not None
    if not kvm.flexpriority_enabled:
        return False
    bail: bool = yield from vmx_set_apic_access_page_addr(vcpu)
    return bail


@bail_immediately.override
def vcpu_enter_guest(vcpu: Vcpu) -> Generator[str, None, int]:
    if kvm_request_pending(vcpu):
        if kvm_check_request(KVM_REQ_TLB_FLUSH, vcpu):
            kvm_vcpu_flush_tlb_all(vcpu)
            yield "kvm_check_request(KVM_REQ_TLB_FLUSH): kvm_vcpu_flush_tlb_all"
        if kvm_check_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu):
            kvm_vcpu_flush_tlb_current(vcpu)
            yield "kvm_check_request(KVM_REQ_TLB_FLUSH_CURRENT): kvm_vcpu_flush_tlb_current"
        if kvm_check_request(KVM_REQ_APIC_PAGE_RELOAD, vcpu):
            vcpu.reload_owed = vcpu.guest_mode
            note("reload_request")
            yield "kvm_check_request(KVM_REQ_APIC_PAGE_RELOAD)"
            bail = yield from kvm_vcpu_reload_apic_access_page(vcpu)
            if bail:
                note("bail")
                yield "reload asked to bail: return 1 (goto out)"
                return 1
        if kvm_check_request(KVM_REQ_APICV_UPDATE, vcpu):
            kvm_vcpu_update_apicv(vcpu)
            yield "kvm_check_request(KVM_REQ_APICV_UPDATE): kvm_vcpu_update_apicv"

    kvm_mmu_reload(vcpu)
    vcpu.irqs_enabled = False
    yield "kvm_mmu_reload; preempt_disable; local_irq_disable"
    vcpu.mode = IN_GUEST_MODE
    yield "vcpu->mode = IN_GUEST_MODE; smp_mb__after_srcu_read_unlock"

    if kvm_vcpu_exit_request(vcpu):
        vcpu.mode = OUTSIDE_GUEST_MODE
        note("bail")
        yield "kvm_vcpu_exit_request() is true: vcpu->mode = OUTSIDE_GUEST_MODE, bail"
        local_irq_enable(vcpu)
        yield "local_irq_enable (cancel_injection, return 1)"
        return 1

    vmx_vcpu_enter(vcpu)
    note("vm_enter")
    yield f"VM-Enter ({'L2' if vcpu.guest_mode else 'L1'}, root {vcpu.root})"
    reason = yield from guest_run(vcpu)
    vcpu.mode = OUTSIDE_GUEST_MODE
    yield f"VM-Exit ({reason}); vcpu->mode = OUTSIDE_GUEST_MODE"
    local_irq_enable(vcpu)
    yield "handle_exit_irqoff; local_irq_enable"
    r = yield from vmx_handle_exit(vcpu, reason)
    return r


# -- skip-notifier-flush ----------------------------------------------------------------------

skip_notifier_flush = register(
    Variant(
        "skip-notifier-flush",
        base="v6.5",
        description="v6.5, but kvm_unmap_gfn_range reports no flush needed when it zapped only "
        "the APIC-access gfn, relying on vmx_set_apic_access_page_addr's own flush",
    )
)


@skip_notifier_flush.override
def kvm_unmap_gfn_range(kvm: Kvm, gfn_range: GfnRange) -> Generator[str, None, bool]:
    flush = False
    flush = kvm_tdp_mmu_unmap_gfn_range(kvm, gfn_range, flush)
    yield f"kvm_tdp_mmu_zap_leafs(as {gfn_range[0]}, gfn {gfn_range[2]:#x})"
    if kvm.flexpriority_enabled and gfn_range[1] == APIC_ACCESS_PAGE_PRIVATE_MEMSLOT:
        yield from kvm_make_all_cpus_request(kvm, KVM_REQ_APIC_PAGE_RELOAD)
        flush = False  # the reload flushes the current root itself
    return flush
