"""Before v3.18: the APIC-access page is pinned for the VM's life and never reloaded.

alloc_apic_access_page keeps its GUP reference in kvm->arch.apic_access_page; vCPU reset
writes APIC_ACCESS_ADDR from it; the MMU notifier (the v3.18-era ->invalidate_page, see
history.py) only zaps SPTEs. The host can neither migrate nor reclaim the page.
"""

from __future__ import annotations

from collections.abc import Generator

from ..kernel import nested
from ..kernel.kvm_host import APIC_HVA, HVA_INDEX, Kvm, Vcpu, replace
from ..kernel.mm import get_page
from ..kernel.vmx import vmcs_write_apic_access_addr
from . import Variant, register

Steps = Generator[str, None, None]

pinned = register(
    Variant(
        "pinned",
        base="v3.18",
        description="Before v3.18: the page is pinned in kvm->arch.apic_access_page for the "
        "VM's life; APIC_ACCESS_ADDR is written from it at vCPU reset and never reloaded",
    )
)


@pinned.override
def kvm_alloc_apic_access_page(kvm: Kvm) -> None:
    """alloc_apic_access_page: gfn_to_page, and keep the reference."""
    mm = kvm.mm
    assert mm is not None
    page = mm.pte[HVA_INDEX[APIC_HVA]]
    assert isinstance(page, int)
    get_page(mm, page)
    mm.pinned = replace(mm.pinned, page, True)
    kvm.apic_access_page = page


@pinned.override
def kvm_arch_mmu_notifier_invalidate_page(kvm: Kvm, address: int) -> Steps:
    """There is no reload request: the notifier only zaps and flushes."""
    return
    yield ""  # pragma: no cover - a generator with no step


@pinned.override
def kvm_vcpu_reload_apic_access_page(vcpu: Vcpu) -> Steps:
    """Only vCPU reset writes the field, from the pinned page."""
    kvm = vcpu.kvm
    assert kvm is not None
    if kvm.apic_access_page is not None and not vcpu.guest_mode:
        vmcs_write_apic_access_addr(vcpu, kvm.apic_access_page)
    return
    yield ""  # pragma: no cover


# Nested VM-Exit reloads nothing: v6.5's nested_vmx_vmexit, whose deferred-reload flag no
# pinned reload ever sets, instead of v3.18's unconditional request.
pinned.set("nested_vmx_vmexit", nested.nested_vmx_vmexit)
