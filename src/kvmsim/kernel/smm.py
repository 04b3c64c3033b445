"""System management mode (smm.c): a different root, in address space 1."""

from __future__ import annotations

from .kvm_host import Vcpu
from .nested import nested_vmx_vmexit
from .tdp_mmu import kvm_mmu_reset_context


def enter_smm(vcpu: Vcpu) -> None:
    """vmx_enter_smm leaves L2 first; kvm_smm_changed(true) resets the MMU context.

    The next kvm_mmu_reload loads the role.smm=1 root of address space 1 and flushes it.
    """
    if vcpu.guest_mode:
        nested_vmx_vmexit(vcpu)
    vcpu.smm = True
    kvm_mmu_reset_context(vcpu)


def emulator_leave_smm(vcpu: Vcpu) -> None:
    """RSM: kvm_smm_changed(false) resets the MMU context back to the address-space-0 root.

    Simplification: returning to L2 after an SMI taken in L2 is not modelled.
    """
    vcpu.smm = False
    kvm_mmu_reset_context(vcpu)
