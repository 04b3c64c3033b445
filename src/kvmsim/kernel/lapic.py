"""Local APIC mode switches (lapic.c): the path that turns the APIC-access control on and off."""

from __future__ import annotations

from .kvm_host import Kvm, Vcpu
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


def kvm_alloc_apic_access_page(kvm: Kvm) -> None:
    """At VM creation: the private APIC slot's page is faulted in, then its reference dropped.

    Not pinned, so that memory hot-unplug (and compaction) can migrate it; the MMU notifier
    tells KVM when it moves. (The model's machine starts with the page already mapped.)
    """
    kvm.apic_access_page = None
