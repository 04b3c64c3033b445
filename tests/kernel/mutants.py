"""Mutants of v6.5, each removing one thing the protocol relies on (issue: mutation tests).

Each is written as a patch would be: the kernel function with one line gone.
"""

from __future__ import annotations

from collections.abc import Generator

from kvmsim.engine import await_
from kvmsim.kernel.kvm import (
    gfn_to_pfn_memslot,
    id_to_memslot,
    kvm_release_pfn_clean,
    memslot_invalid,
    read_lock,
    read_unlock,
    slots_intersecting,
    write_lock,
    write_unlock,
)
from kvmsim.kernel.kvm_host import (
    APIC_ACCESS_PAGE_PRIVATE_MEMSLOT,
    APIC_DEFAULT_PHYS_BASE,
    EXITING_GUEST_MODE,
    IN_GUEST_MODE,
    OUTSIDE_GUEST_MODE,
    PAGE_SHIFT,
    Kvm,
    Vcpu,
)
from kvmsim.kernel.requests import send_ipi
from kvmsim.kernel.tdp_mmu import root_for_role
from kvmsim.kernel.tlb import kvm_service_local_tlb_flush_requests, vmx_flush_tlb_current
from kvmsim.kernel.vmx import (
    is_guest_mode,
    secondary_exec_controls_get,
    secondary_exec_controls_set,
    vmcs_write_apic_access_addr,
    vmx_set_virtual_apic_mode,
)
from kvmsim.variants import Variant

Steps = Generator[str, None, None]

no_retry = Variant(
    "mutant-no-retry", base="v6.5", description="v6.5 reload without the retry check"
)


@no_retry.override
def vmx_set_apic_access_page_addr(vcpu: Vcpu) -> Steps:
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
    yield "mmu_seq = kvm->mmu_invalidate_seq"
    pfn = yield from gfn_to_pfn_memslot(kvm, slot, gfn)
    if pfn is None:
        return
    read_lock(kvm)
    # (mutation: no mmu_invalidate_retry_hva() check)
    vmcs_write_apic_access_addr(vcpu, pfn)
    read_unlock(kvm)
    vmx_flush_tlb_current(vcpu)
    yield f"vmcs_write64(APIC_ACCESS_ADDR, {pfn}); read_unlock; vmx_flush_tlb_current"
    kvm_release_pfn_clean(kvm, pfn)
    yield f"kvm_release_pfn_clean({pfn})"


no_remote_flush = Variant(
    "mutant-no-remote-flush", base="v6.5", description="range_start never flushes remote TLBs"
)


@no_remote_flush.override
def __kvm_handle_hva_range(kvm, start, end, handler, on_lock, flush_on_ret):  # type: ignore[no-untyped-def]
    locked = False
    for gfn_range in slots_intersecting(kvm, start, end):
        if not locked:
            locked = True
            write_lock(kvm)
            on_lock(kvm, start, end)
            yield f"write_lock(mmu_lock); {on_lock.__name__}"
            if handler is None:
                break
        yield from handler(kvm, gfn_range)
    # (mutation: no kvm_flush_remote_tlbs() when the handler zapped something)
    if locked:
        write_unlock(kvm)
        yield "write_unlock(mmu_lock)"
    return locked


no_late_check = Variant(
    "mutant-no-late-check", base="v6.5", description="vcpu_enter_guest never re-checks requests"
)


@no_late_check.override
def kvm_vcpu_exit_request(vcpu: Vcpu) -> bool:
    return False  # (mutation: the late check is gone)


no_wait = Variant(
    "mutant-no-wait", base="v6.5", description="WAIT requests do not wait for acknowledgements"
)


@no_wait.override
def kvm_kick_many_cpus(mask: tuple[Vcpu, ...], wait: bool) -> Steps:
    if not mask:
        return
    for vcpu in mask:
        send_ipi(vcpu)
    yield "smp_call_function_many: send IPIs to " + ", ".join(v.name for v in mask)
    # (mutation: no waiting for the acknowledgements)


__all__ = [
    "EXITING_GUEST_MODE",
    "IN_GUEST_MODE",
    "OUTSIDE_GUEST_MODE",
    "Kvm",
    "MUTANTS",
    "await_",
]


no_release = Variant(
    "mutant-no-release", base="v6.5", description="the reload never drops its page reference"
)


def leak_pfn(kvm: Kvm, pfn: int) -> None:
    pass  # (mutation: the reference taken by gfn_to_pfn_memslot is leaked)


no_release.set("kvm_release_pfn_clean", leak_pfn)


no_nested_rerequest = Variant(
    "mutant-no-nested-rerequest",
    base="v6.5",
    description="nested VM-Exit forgets the reload deferred while L2 ran",
)


@no_nested_rerequest.override
def nested_vmx_vmexit(vcpu: Vcpu) -> None:
    kvm_service_local_tlb_flush_requests(vcpu)
    vcpu.guest_mode = False
    if vcpu.change_vmcs01_virtual_apic_mode:
        vcpu.change_vmcs01_virtual_apic_mode = False
        vmx_set_virtual_apic_mode(vcpu)
    vcpu.reload_vmcs01_apic_access_page = False  # (mutation: no KVM_REQ_APIC_PAGE_RELOAD)
    vcpu.root = root_for_role(vcpu)


no_ctl_requests = Variant(
    "mutant-no-ctl-requests",
    base="v6.5",
    description="switching to xAPIC turns the control on without a reload or a flush",
)


def set_virtual_apic_mode_silently(vcpu: Vcpu) -> None:
    if vcpu.guest_mode:
        vcpu.change_vmcs01_virtual_apic_mode = True
        return
    # (mutation: no KVM_REQ_APIC_PAGE_RELOAD, no KVM_REQ_TLB_FLUSH_CURRENT)
    secondary_exec_controls_set(vcpu, vcpu.apic_mode == "xapic")


no_ctl_requests.set("vmx_set_virtual_apic_mode", set_virtual_apic_mode_silently)


MUTANTS = (
    no_retry,
    no_remote_flush,
    no_late_check,
    no_wait,
    no_release,
    no_nested_rerequest,
    no_ctl_requests,
)
