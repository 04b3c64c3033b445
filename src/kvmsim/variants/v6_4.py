"""v6.4 (and v5.8-v6.3): the reload is requested from KVM's ->invalidate_range notifier.

Three differences from v6.5, as in the 2023 series that moved the hook (P1-P3):
the reload takes no sequence count and never retries; kvm_unmap_gfn_range asks nothing of
the vCPUs; and KVM registers ->invalidate_range, which mm calls after the PTEs changed,
before freeing the pages, and immediately before ->invalidate_range_end.
"""

from __future__ import annotations

from collections.abc import Generator

from ..kernel.kvm import gfn_to_page
from ..kernel.kvm_host import APIC_DEFAULT_PHYS_BASE, PAGE_SHIFT, Kvm, Vcpu, gfn_to_hva
from ..kernel.mm import put_page
from ..kernel.requests import KVM_REQ_APIC_PAGE_RELOAD, kvm_make_all_cpus_request
from ..kernel.tdp_mmu import GfnRange, kvm_tdp_mmu_unmap_gfn_range
from ..kernel.tlb import vmx_flush_tlb_current
from ..kernel.vmx import is_guest_mode, secondary_exec_controls_get, vmcs_write_apic_access_addr
from . import Variant, register

Steps = Generator[str, None, None]

v6_4 = register(
    Variant(
        "v6.4",
        description="Reload requested from the ->invalidate_range notifier (just before "
        "range_end); the reload is gfn_to_page + VMCS write + flush, with no retry",
    )
)


@v6_4.override
def vmx_set_apic_access_page_addr(vcpu: Vcpu) -> Steps:
    kvm = vcpu.kvm
    assert kvm is not None and kvm.mm is not None
    if is_guest_mode(vcpu):
        vcpu.reload_vmcs01_apic_access_page = True
        return
    if not secondary_exec_controls_get(vcpu):
        return
    page = yield from gfn_to_page(kvm, APIC_DEFAULT_PHYS_BASE >> PAGE_SHIFT)
    if page is None:
        return  # is_error_page
    vmcs_write_apic_access_addr(vcpu, page)
    vmx_flush_tlb_current(vcpu)
    yield f"vmcs_write64(APIC_ACCESS_ADDR, {page}); vmx_flush_tlb_current"
    put_page(kvm.mm, page)  # not kept pinned: the notifier calls back if the page moves
    yield f"put_page({page})"


@v6_4.override
def kvm_unmap_gfn_range(kvm: Kvm, gfn_range: GfnRange) -> Generator[str, None, bool]:
    flush = kvm_tdp_mmu_unmap_gfn_range(kvm, gfn_range, False)
    yield f"kvm_tdp_mmu_zap_leafs(as {gfn_range[0]}, gfn {gfn_range[2]:#x})"
    return flush


def kvm_arch_mmu_notifier_invalidate_range(kvm: Kvm, start: int, end: int) -> Steps:
    """x86.c: if the APIC page's hva is in the range, reload it on every vCPU. No mmu_lock."""
    apic_address = gfn_to_hva(APIC_DEFAULT_PHYS_BASE >> PAGE_SHIFT)
    if apic_address is not None and start <= apic_address < end:
        yield from kvm_make_all_cpus_request(kvm, KVM_REQ_APIC_PAGE_RELOAD)


def kvm_mmu_notifier_invalidate_range(kvm: Kvm, start: int, end: int) -> Steps:
    """kvm_main.c's ->invalidate_range: SRCU read lock around the arch hook."""
    yield from kvm_arch_mmu_notifier_invalidate_range(kvm, start, end)


v6_4.set("kvm_mmu_notifier_invalidate_range", kvm_mmu_notifier_invalidate_range)
