"""Per-CPU TLBs of guest-physical translations and the VMX flush flavours (vmx.c, x86.c).

Entries are tagged by EPTP (here: the root) and live on one physical CPU; INVEPT acts only on
the CPU that executes it. A single-context INVEPT drops one EPTP's entries, an all-context
INVEPT drops every entry of that CPU.

Simplification: only guest-physical mappings of the two modelled gfns are cached; VPID-tagged
linear mappings are not modelled (they never translate a GPA to a host page by themselves).
"""

from __future__ import annotations

from ..engine import note
from .kvm_host import Pcpu, Vcpu
from .requests import KVM_REQ_TLB_FLUSH_CURRENT, kvm_check_request, kvm_clear_request


def pcpu_of(vcpu: Vcpu) -> Pcpu:
    kvm = vcpu.kvm
    assert kvm is not None
    return kvm.pcpus[vcpu.cpu]


def tlb_lookup(pcpu: Pcpu, root: str, gfn: int) -> int | None:
    for r, g, pfn in pcpu.tlb:
        if r == root and g == gfn:
            return pfn
    return None


def tlb_fill(pcpu: Pcpu, root: str, gfn: int, pfn: int) -> None:
    pcpu.tlb = pcpu.tlb | {(root, gfn, pfn)}


def ept_sync_context(pcpu: Pcpu, root: str) -> None:
    """INVEPT single-context for one EPTP, on this CPU only."""
    note("flush_current")
    pcpu.tlb = frozenset(e for e in pcpu.tlb if e[0] != root)


def ept_sync_global(pcpu: Pcpu) -> None:
    """INVEPT all-context, on this CPU only."""
    note("flush_all")
    pcpu.tlb = frozenset()


def vmx_flush_tlb_current(vcpu: Vcpu) -> None:
    """Single-context INVEPT of the current root; nothing if the root is invalid."""
    if vcpu.root is None:
        return
    ept_sync_context(pcpu_of(vcpu), vcpu.root)
    vcpu.ctl_owed = vcpu.ctl_owed - {"flush"}  # ghost for INV-CTL


def vmx_flush_tlb_all(vcpu: Vcpu) -> None:
    ept_sync_global(pcpu_of(vcpu))
    vcpu.ctl_owed = vcpu.ctl_owed - {"flush"}  # ghost for INV-CTL


def kvm_vcpu_flush_tlb_all(vcpu: Vcpu) -> None:
    """Flushing everything also flushes the current root: drop a pending FLUSH_CURRENT."""
    vmx_flush_tlb_all(vcpu)
    kvm_clear_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu)


def kvm_vcpu_flush_tlb_current(vcpu: Vcpu) -> None:
    vmx_flush_tlb_current(vcpu)


def kvm_service_local_tlb_flush_requests(vcpu: Vcpu) -> None:
    """FLUSH_CURRENT (and FLUSH_GUEST, which touches no guest-physical mapping here)."""
    if kvm_check_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu):
        kvm_vcpu_flush_tlb_current(vcpu)
