"""Nested VMX: entering L2 and the L2 -> L1 VM-Exit (nested.c).

While L2 runs, vmcs02 is current: a reload only sets ``reload_vmcs01_apic_access_page`` and an
APIC mode change only sets ``change_vmcs01_virtual_apic_mode``; ``nested_vmx_vmexit`` replays
both against vmcs01. KVM's own APIC page is never mapped for L2 (the private slot is invisible
to L2 faults).

Simplifications: vmcs12 does not enable VIRTUALIZE_APIC_ACCESSES for L2 (L1's own APIC-access
page for L2 is not modelled), vmcs12 has no VPID, and L1's EPT12 is the identity.
"""

from __future__ import annotations

from .kvm_host import Vcpu
from .requests import KVM_REQ_APIC_PAGE_RELOAD, kvm_make_request
from .tdp_mmu import kvm_mmu_reset_context, root_for_role
from .tlb import kvm_service_local_tlb_flush_requests
from .vmx import vmx_set_virtual_apic_mode


def nested_vmx_enter_non_root_mode(vcpu: Vcpu) -> None:
    """VMLAUNCH from L1: flush L1's pending local requests, then run L2 on guest_mmu's root."""
    kvm_service_local_tlb_flush_requests(vcpu)
    vcpu.guest_mode = True  # enter_guest_mode; vmcs02 is current
    # prepare_vmcs02 -> nested_ept_init_mmu_context: vcpu->arch.mmu = guest_mmu, whose
    # root is loaded (and flushed) by the next kvm_mmu_reload.
    kvm_mmu_reset_context(vcpu)


def nested_vmx_vmexit(vcpu: Vcpu) -> None:
    """L2 -> L1: service L2's local flushes, switch to vmcs01, replay what was deferred."""
    kvm_service_local_tlb_flush_requests(vcpu)
    vcpu.guest_mode = False  # leave_guest_mode; vmx_switch_vmcs(vmcs01)
    if vcpu.change_vmcs01_virtual_apic_mode:
        vcpu.change_vmcs01_virtual_apic_mode = False
        vmx_set_virtual_apic_mode(vcpu)
    if vcpu.reload_vmcs01_apic_access_page:
        vcpu.reload_vmcs01_apic_access_page = False
        kvm_make_request(KVM_REQ_APIC_PAGE_RELOAD, vcpu)
    # load_vmcs12_host_state -> nested_ept_uninit_mmu_context: back to root_mmu, whose root
    # stayed valid while L2 ran (no reload, no flush).
    vcpu.root = root_for_role(vcpu)
