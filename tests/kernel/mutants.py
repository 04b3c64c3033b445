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
from kvmsim.kernel.tdp_mmu import drop_ref, note_ref
from kvmsim.kernel.tlb import vmx_flush_tlb_current
from kvmsim.kernel.vmx import (
    is_guest_mode,
    secondary_exec_controls_get,
    vmcs_write_apic_access_addr,
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
    note_ref(vcpu, pfn)
    read_lock(kvm)
    # (mutation: no mmu_invalidate_retry_hva() check)
    vmcs_write_apic_access_addr(vcpu, pfn)
    read_unlock(kvm)
    vmx_flush_tlb_current(vcpu)
    yield f"vmcs_write64(APIC_ACCESS_ADDR, {pfn}); read_unlock; vmx_flush_tlb_current"
    kvm_release_pfn_clean(kvm, pfn)
    drop_ref(vcpu, pfn)
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


MUTANTS = (no_retry, no_remote_flush, no_late_check, no_wait)

__all__ = [
    "EXITING_GUEST_MODE",
    "IN_GUEST_MODE",
    "OUTSIDE_GUEST_MODE",
    "Kvm",
    "MUTANTS",
    "await_",
]
