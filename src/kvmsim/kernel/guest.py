"""Guest programs: what each vCPU's guest does while it runs, one instruction per step.

A program is a tuple of operations:

* ``apic``: read/write the APIC page at GPA 0xfee00000 (virtualized when the translation
  targets vmcs01's APIC_ACCESS_ADDR and the control is on);
* ``ram``: touch one ordinary guest page;
* ``x2apic`` / ``disable`` / ``xapic``: WRMSR to IA32_APIC_BASE (xAPIC -> x2APIC, -> disabled,
  disabled -> xAPIC; the architecture forbids x2APIC -> xAPIC directly);
* ``vmlaunch`` / ``vmexit``: L1 enters its L2 guest; L2 exits to L1;
* ``smi`` / ``rsm``: an SMI is taken; the SMM handler returns.

When the program ends the guest halts and KVM_RUN returns to user space. Accesses go through
the CPU's TLB, then the EPT of the current root; a missing SPTE is an EPT violation.
"""

from __future__ import annotations

from .kvm_host import APIC_GFN, RAM_GFN, Vcpu, spte_get
from .tlb import pcpu_of, tlb_fill, tlb_lookup

OPS = ("apic", "ram", "x2apic", "disable", "xapic", "vmlaunch", "vmexit", "smi", "rsm")
ACCESS_GFN = {"apic": APIC_GFN, "ram": RAM_GFN}
EXIT_FOR_OP = {
    "x2apic": "MSR_WRITE",
    "disable": "MSR_WRITE",
    "xapic": "MSR_WRITE",
    "vmlaunch": "VMLAUNCH",
    "vmexit": "NESTED_VMEXIT",
    "smi": "SMI",
    "rsm": "RSM",
}


def validate_program(program: tuple[str, ...]) -> None:
    """Refuse programs the architecture cannot run (one line naming the problem)."""
    l2 = smm = False
    mode = "xapic"
    for i, op in enumerate(program):
        if op not in OPS:
            raise ValueError(f"guest op {i} {op!r} is not one of {', '.join(OPS)}")
        if op == "vmlaunch" and (l2 or smm):
            raise ValueError(f"guest op {i}: vmlaunch needs L1 outside SMM")
        if op == "vmexit" and not l2:
            raise ValueError(f"guest op {i}: vmexit needs L2 running")
        if op == "smi" and smm:
            raise ValueError(f"guest op {i}: smi while already in SMM")
        if op == "rsm" and not smm:
            raise ValueError(f"guest op {i}: rsm outside SMM")
        if op == "xapic" and mode == "x2apic":
            raise ValueError(f"guest op {i}: x2APIC -> xAPIC must go through 'disable'")
        l2 = (l2 or op == "vmlaunch") and op != "vmexit" and op != "smi"
        smm = (smm or op == "smi") and op != "rsm"
        mode = {"x2apic": "x2apic", "disable": "disabled", "xapic": "xapic"}.get(op, mode)


def translate(vcpu: Vcpu, gfn: int) -> int | None:
    """The CPU's GPA -> HPA walk: TLB of this CPU for the current EPTP, then the SPTE."""
    kvm = vcpu.kvm
    assert kvm is not None and vcpu.root is not None
    pcpu = pcpu_of(vcpu)
    pfn = tlb_lookup(pcpu, vcpu.root, gfn)
    if pfn is None:
        pfn = spte_get(kvm, vcpu.root, gfn)
        if pfn is not None:
            tlb_fill(pcpu, vcpu.root, gfn, pfn)
    return pfn


def guest_execute(vcpu: Vcpu) -> str | None:
    """Run the guest's next operation; the VM-Exit reason, or None if it stays in the guest."""
    if vcpu.guest_pc >= len(vcpu.program):
        return "HLT"
    op = vcpu.program[vcpu.guest_pc]
    gfn = ACCESS_GFN.get(op)
    if gfn is None:
        return EXIT_FOR_OP[op]
    pfn = translate(vcpu, gfn)
    if pfn is None:
        return "EPT_VIOLATION"
    note_apic_use(vcpu, gfn, pfn)
    vcpu.guest_pc += 1
    return None


def note_apic_use(vcpu: Vcpu, gfn: int, pfn: int) -> None:
    """Ghost for a `sometimes` property: the guest used the APIC page after it moved."""
    kvm = vcpu.kvm
    assert kvm is not None
    if (
        gfn == APIC_GFN
        and kvm.apic_moved
        and not vcpu.guest_mode
        and vcpu.virtualize_apic_accesses
        and pfn == vcpu.apic_access_addr
        and not kvm.moved_and_used
    ):
        kvm.moved_and_used = True


def faulting_gfn(vcpu: Vcpu) -> int:
    return ACCESS_GFN[vcpu.program[vcpu.guest_pc]]
