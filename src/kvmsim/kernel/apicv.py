"""VM-wide APICv inhibits (x86.c): KVM_REQ_APICV_UPDATE everywhere, and a zap of the APIC gfn.

While APICv is inhibited, faults on the APIC gfn are emulated (no SPTE); on VMX the APIC-access
control and APIC_ACCESS_ADDR are untouched.
"""

from __future__ import annotations

from collections.abc import Generator

from .kvm_host import APIC_GFN, Kvm
from .requests import KVM_REQ_APICV_UPDATE, kvm_make_all_cpus_request
from .tdp_mmu import kvm_zap_gfn_range

Steps = Generator[str, None, None]


def __kvm_set_or_clear_apicv_inhibit(kvm: Kvm, inhibit: bool) -> Steps:
    """Under apicv_update_lock (write): kick every vCPU, store the new state, zap if inhibited."""
    if kvm.apicv_active != inhibit:
        return  # no change between active and inhibited
    yield from kvm_make_all_cpus_request(kvm, KVM_REQ_APICV_UPDATE)
    kvm.apicv_active = not inhibit
    yield f"apicv_inhibit_reasons {'set' if inhibit else 'cleared'}"
    if inhibit:
        yield from kvm_zap_gfn_range(kvm, APIC_GFN)


def vmm_toggle_apicv(kvm: Kvm) -> Steps:
    """Something inhibits APICv VM-wide (e.g. a guest debug feature), then lifts it."""
    yield from __kvm_set_or_clear_apicv_inhibit(kvm, True)
    yield from __kvm_set_or_clear_apicv_inhibit(kvm, False)
