"""The APIC-access page protocol through history: each shape named by the first version
that had it (reference section 9). Sources: the trees and commits in docs/variants.md.

* ``v3.18`` (to v4.12): unpinned; the single-page ``->invalidate_page`` notifier, which mm
  calls after the PTE changed and before the page is freed, requests the reload. Range
  invalidations (MADV_DONTNEED, munmap) request nothing. The reload takes no flush.
* ``v4.13`` (to v4.14): ``->invalidate_page`` is gone and nothing requests the reload; the
  reload now flushes the current root after writing the VMCS.
* ``v4.15`` (to v5.7, b1394e745b94): range_start requests the reload after the zap, the flush
  and the unlock, i.e. before the primary MMU changes its PTE.
* ``v5.8``: the v6.4 shape (e649b3f0188f, the 2020 TLB series, 1196cb970b99).
* ``v6.13``: v6.6 with the retry check, the VMCS write and the page release all under
  ``read_lock(mmu_lock)`` (the pfn comes from ``__kvm_faultin_pfn``).

Simplifications shared by the old shapes: the fault path keeps the 6.x range-filtered retry
check; mmu_lock is the 6.x rwlock; ``nested_vmx_vmexit`` requests the reload where v3.18 called
it directly; the guest-mode write to vmcs02 (when L1 shares L0's page) is not modelled.
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import note
from ..kernel.host import try_to_migrate_one as range_try_to_migrate_one
from ..kernel.host import try_to_unmap_one as range_try_to_unmap_one
from ..kernel.kvm import (
    __kvm_handle_hva_range,
    gfn_to_hva_memslot,
    gfn_to_page,
    gfn_to_pfn_memslot,
    id_to_memslot,
    kvm_flush_remote_tlbs,
    kvm_mmu_invalidate_begin,
    kvm_release_pfn_clean,
    memslot_invalid,
    mmu_invalidate_retry_hva,
    read_lock,
    read_unlock,
    write_lock,
    write_unlock,
)
from ..kernel.kvm_host import (
    ADDRESS_SPACES,
    APIC_ACCESS_PAGE_PRIVATE_MEMSLOT,
    APIC_DEFAULT_PHYS_BASE,
    HVA_INDEX,
    MIGRATION,
    PAGE_SHIFT,
    Kvm,
    Mm,
    Vcpu,
    gfn_to_hva,
    hva_to_gfn,
    replace,
)
from ..kernel.mm import put_page
from ..kernel.requests import (
    KVM_REQ_APIC_PAGE_RELOAD,
    kvm_make_all_cpus_request,
    kvm_make_request,
)
from ..kernel.tdp_mmu import (
    GfnRange,
    kvm_tdp_mmu_unmap_gfn_range,
    kvm_tdp_mmu_zap_leafs,
    root_for_role,
)
from ..kernel.tlb import kvm_service_local_tlb_flush_requests, vmx_flush_tlb_current
from ..kernel.vmx import secondary_exec_controls_set, vmcs_write_apic_access_addr
from . import Variant, register

Steps = Generator[str, None, None]
APIC_GFN = APIC_DEFAULT_PHYS_BASE >> PAGE_SHIFT

# -- v3.18: ->invalidate_page ------------------------------------------------------------

v3_18 = register(
    Variant(
        "v3.18",
        base="v6.5",
        description="Unpinned (Tang Chen): the ->invalidate_page notifier requests the reload "
        "after the PTE changed; range invalidations request nothing; the reload "
        "(gfn_to_page, VMCS write, put_page) takes no flush and has no retry",
    )
)


@v3_18.override
def try_to_migrate_one(mm: Mm, hva: int, src: int) -> Steps:
    """v3.18-v4.12 try_to_unmap_one(TTU_MIGRATION): change the PTE, then ->invalidate_page."""
    i = HVA_INDEX[hva]
    mm.pte = replace(mm.pte, i, (MIGRATION, src))
    put_page(mm, src)  # page_remove_rmap + the mapping's reference
    yield f"try_to_unmap_one: ptep_clear_flush, migration entry for page {src}, unlock PTL"
    yield from mmu_notifier_invalidate_page(mm, hva)


@v3_18.override
def try_to_unmap_one(mm: Mm, hva: int, src: int) -> Steps:
    """v3.18-v4.12 try_to_unmap_one for reclaim: clear the PTE, then ->invalidate_page."""
    i = HVA_INDEX[hva]
    mm.pte = replace(mm.pte, i, None)
    put_page(mm, src)
    yield f"try_to_unmap_one: ptep_clear_flush page {src}, unlock PTL"
    yield from mmu_notifier_invalidate_page(mm, hva)


@v3_18.define
def mmu_notifier_invalidate_page(mm: Mm, address: int) -> Steps:
    kvm = mm.kvm
    assert kvm is not None
    yield from kvm_mmu_notifier_invalidate_page(kvm, address)


@v3_18.define
def kvm_mmu_notifier_invalidate_page(kvm: Kvm, address: int) -> Steps:
    """kvm_main.c: under mmu_lock, bump the sequence, zap, flush; then the arch hook."""
    gfn = hva_to_gfn(address)
    write_lock(kvm)  # spin_lock(&kvm->mmu_lock) in these kernels
    kvm.mmu_invalidate_seq += 1  # mmu_notifier_seq++
    flush = False
    if gfn is not None:
        for as_id in ADDRESS_SPACES if kvm.smm_enabled else ADDRESS_SPACES[:1]:
            flush = kvm_tdp_mmu_zap_leafs(kvm, as_id, gfn, flush)  # kvm_unmap_hva
    yield "spin_lock(mmu_lock); mmu_notifier_seq++; kvm_unmap_hva"
    if flush:
        yield from kvm_flush_remote_tlbs(kvm)
    write_unlock(kvm)
    yield "spin_unlock(mmu_lock)"
    yield from kvm_arch_mmu_notifier_invalidate_page(kvm, address)


@v3_18.define
def kvm_arch_mmu_notifier_invalidate_page(kvm: Kvm, address: int) -> Steps:
    if address == gfn_to_hva(APIC_GFN):
        yield from kvm_make_all_cpus_request(kvm, KVM_REQ_APIC_PAGE_RELOAD)


@v3_18.override
def kvm_unmap_gfn_range(kvm: Kvm, gfn_range: GfnRange) -> Generator[str, None, bool]:
    """Before v6.5 the range callbacks only zap: no APIC logic."""
    flush = kvm_tdp_mmu_unmap_gfn_range(kvm, gfn_range, False)
    yield f"kvm_tdp_mmu_zap_leafs(as {gfn_range[0]}, gfn {gfn_range[2]:#x})"
    return flush


@v3_18.override
def kvm_vcpu_reload_apic_access_page(vcpu: Vcpu) -> Steps:
    """x86.c (v3.18-v5.7): gfn_to_page, hand the hpa to VMX, put_page; no sequence count."""
    kvm = vcpu.kvm
    assert kvm is not None and kvm.mm is not None
    if not kvm.flexpriority_enabled:
        return
    page = yield from gfn_to_page(kvm, APIC_GFN)
    if page is None:
        return
    vmx_set_apic_access_page_addr_hpa(vcpu, page)
    yield f"set_apic_access_page_addr(vcpu, page_to_phys({page}))"
    put_page(kvm.mm, page)
    yield f"put_page({page})"


@v3_18.define
def vmx_set_apic_access_page_addr_hpa(vcpu: Vcpu, page: int) -> None:
    """vmx.c (v3.18-v5.7) takes the address: written unless in guest mode; no control check."""
    if not vcpu.guest_mode:
        vmcs_write_apic_access_addr(vcpu, page)
        flush_after_apic_access_addr_write(vcpu)


@v3_18.define
def flush_after_apic_access_addr_write(vcpu: Vcpu) -> None:
    """v3.18: none (fb6c81984313 added a current-root flush before v4.13)."""


@v3_18.override
def nested_vmx_vmexit(vcpu: Vcpu) -> None:
    """Before 1196cb970b99 (v5.8) every nested VM-Exit reloaded the page for vmcs01."""
    kvm_service_local_tlb_flush_requests(vcpu)
    vcpu.guest_mode = False
    if vcpu.change_vmcs01_virtual_apic_mode:
        vcpu.change_vmcs01_virtual_apic_mode = False
        vmx_set_virtual_apic_mode(vcpu)
    kvm_make_request(KVM_REQ_APIC_PAGE_RELOAD, vcpu)
    vcpu.root = root_for_role(vcpu)


@v3_18.override
def vmx_set_virtual_apic_mode(vcpu: Vcpu) -> None:
    """vmx_set_virtual_x2apic_mode (v3.18-v5.7): flip the control; no reload request."""
    kvm = vcpu.kvm
    assert kvm is not None
    if not kvm.flexpriority_enabled:
        return
    if vcpu.guest_mode:
        vcpu.change_vmcs01_virtual_apic_mode = True
        return
    virtualize = vcpu.apic_mode == "xapic"
    secondary_exec_controls_set(vcpu, virtualize)
    if virtualize:
        flush_after_apic_access_addr_write(vcpu)


# -- v4.13: nobody requests the reload --------------------------------------------------------

v4_13 = register(
    Variant(
        "v4.13",
        base="v3.18",
        description="->invalidate_page removed (369ea8242c0f): range_start/end only zap and "
        "flush, nothing requests the reload; the reload flushes the current root",
    )
)
v4_13.set("try_to_migrate_one", range_try_to_migrate_one)
v4_13.set("try_to_unmap_one", range_try_to_unmap_one)


def flush_current_root(vcpu: Vcpu) -> None:
    """vmx_flush_tlb_ept_only (v4.x) / vmx_flush_tlb(vcpu, true) (v5.x): current root."""
    vmx_flush_tlb_current(vcpu)


v4_13.set("flush_after_apic_access_addr_write", flush_current_root)

# -- v4.15: requested from range_start, before the PTE changes ---------------------------------

v4_15 = register(
    Variant(
        "v4.15",
        base="v4.13",
        description="b1394e745b94: range_start requests the reload after zap, flush and unlock "
        "(before the primary MMU changes the PTE); no retry",
    )
)


@v4_15.override
def kvm_mmu_notifier_invalidate_range_start(kvm: Kvm, start: int, end: int) -> Steps:
    kvm.mn_active_invalidate_count += 1
    yield "mn_active_invalidate_count++"
    yield from __kvm_handle_hva_range(
        kvm, start, end, kvm_unmap_gfn_range, kvm_mmu_invalidate_begin, flush_on_ret=True
    )
    yield from kvm_arch_mmu_notifier_invalidate_range(kvm, start, end)


@v4_15.define
def kvm_arch_mmu_notifier_invalidate_range(kvm: Kvm, start: int, end: int) -> Steps:
    address = gfn_to_hva(APIC_GFN)
    if address is not None and start <= address < end:
        yield from kvm_make_all_cpus_request(kvm, KVM_REQ_APIC_PAGE_RELOAD)


# -- v5.8 = v6.4 -------------------------------------------------------------------------------

v5_8 = register(
    Variant(
        "v5.8",
        base="v6.4",
        description="e649b3f0188f + the 2020 TLB series + 1196cb970b99: the v6.4 shape "
        "(the same model; the name kept for history)",
    )
)

# -- v6.13: everything after the lookup under mmu_lock -----------------------------------------

v6_13 = register(
    Variant(
        "v6.13",
        base="v6.6",
        description="v6.6 with the retry check (by gfn), the VMCS write and the page release "
        "all under read_lock(mmu_lock); the pfn from __kvm_faultin_pfn",
    )
)


@v6_13.override
def vmx_set_apic_access_page_addr(vcpu: Vcpu) -> Steps:
    kvm = vcpu.kvm
    assert kvm is not None
    if vcpu.guest_mode:
        vcpu.reload_vmcs01_apic_access_page = True
        return
    if not vcpu.virtualize_apic_accesses:
        return
    slot = id_to_memslot(kvm, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT)
    if slot is None or memslot_invalid(kvm, slot):
        return
    mmu_seq = kvm.mmu_invalidate_seq
    note("reload_attempt")
    yield f"mmu_seq = kvm->mmu_invalidate_seq ({mmu_seq})"
    pfn = yield from gfn_to_pfn_memslot(kvm, slot, APIC_GFN)  # __kvm_faultin_pfn(FOLL_WRITE)
    if pfn is None:
        return
    read_lock(kvm)
    # mmu_invalidate_retry_gfn: with one page per slot, the gfn test is the hva test.
    if mmu_invalidate_retry_hva(kvm, mmu_seq, gfn_to_hva_memslot(slot, APIC_GFN)):
        kvm_make_request(KVM_REQ_APIC_PAGE_RELOAD, vcpu)
        note("reload_retry")
        kvm.reload_retried = True
        what = "retry: kvm_make_request(KVM_REQ_APIC_PAGE_RELOAD)"
    else:
        vmcs_write_apic_access_addr(vcpu, pfn)
        what = f"vmcs_write64(APIC_ACCESS_ADDR, {pfn})"
    kvm_release_pfn_clean(kvm, pfn)  # kvm_release_page_clean(refcounted_page)
    read_unlock(kvm)
    yield f"read_lock(mmu_lock); {what}; kvm_release_page_clean; read_unlock"
