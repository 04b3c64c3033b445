"""Local APIC mode switches (lapic.c): the path that turns the APIC-access control on and off."""

from __future__ import annotations

from .kvm_host import Vcpu
from .vmx import vmx_set_virtual_apic_mode


def kvm_lapic_set_base(vcpu: Vcpu, mode: str) -> None:
    """A guest WRMSR to IA32_APIC_BASE that changes the enable or x2APIC bit.

    kvm_set_apic_base refuses x2APIC -> xAPIC directly, so guests go through "disabled".
    Simplification: the KVM_REQ_APICV_UPDATE this also makes is not modelled; on VMX it
    never touches VIRTUALIZE_APIC_ACCESSES.
    """
    if vcpu.apic_mode == mode:
        return
    vcpu.apic_mode = mode
    vmx_set_virtual_apic_mode(vcpu)
