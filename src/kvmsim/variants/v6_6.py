"""v6.6 (775bc098657b): v6.5 without the reload's own vmx_flush_tlb_current().

The notifier's remote TLB flush already covers a page that moved; the reload's flush was
judged unnecessary and dropped.
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
    PAGE_SHIFT,
    Vcpu,
)
from ..kernel.requests import KVM_REQ_APIC_PAGE_RELOAD, kvm_make_request
from ..kernel.vmx import is_guest_mode, secondary_exec_controls_get, vmcs_write_apic_access_addr
from . import Variant, register

v6_6 = register(
    Variant(
        "v6.6",
        base="v6.5",
        description="v6.5 without the reload's own vmx_flush_tlb_current() (775bc098657b)",
    )
)


@v6_6.override
def vmx_set_apic_access_page_addr(vcpu: Vcpu) -> Generator[str, None, None]:
    kvm = vcpu.kvm
    assert kvm is not None
    gfn = APIC_DEFAULT_PHYS_BASE >> PAGE_SHIFT
    if is_guest_mode(vcpu):
        vcpu.reload_vmcs01_apic_access_page = True
        return
    if not secondary_exec_controls_get(vcpu):
        return
    slot = id_to_memslot(kvm, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT)
    if slot is None or memslot_invalid(kvm, slot):
        return
    mmu_seq = kvm.mmu_invalidate_seq
    note("reload_attempt")
    yield f"mmu_seq = kvm->mmu_invalidate_seq ({mmu_seq})"
    pfn = yield from gfn_to_pfn_memslot(kvm, slot, gfn)
    if pfn is None:
        return
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
        # (v6.6: no vmx_flush_tlb_current() here)
        yield f"vmcs_write64(APIC_ACCESS_ADDR, {pfn}); read_unlock"
    kvm_release_pfn_clean(kvm, pfn)
    yield f"kvm_release_pfn_clean({pfn})"
