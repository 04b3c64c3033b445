"""The vCPU thread: KVM_RUN, vcpu_run's outer loop and vcpu_enter_guest (x86.c).

The order is the kernel's: the request block (only the requests this protocol uses, in the
kernel's order), kvm_mmu_reload, interrupts off, ``mode = IN_GUEST_MODE`` and the full
barrier, the late ``kvm_vcpu_exit_request`` check that bails back to the outer loop, then
VM-Enter, the guest, VM-Exit, ``mode = OUTSIDE_GUEST_MODE``, interrupts on, and the exit
handler.

Where two lines touch nothing another CPU reads, they share one step; a request check that
finds its bit clear is not a step of its own, nor are the early returns of the reload
(docs/model.md lists every such merge and why it hides no interleaving that matters).
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import choose, fail, note
from .guest import faulting_gfn, guest_execute
from .kvm_host import EXITING_GUEST_MODE, IN_GUEST_MODE, OUTSIDE_GUEST_MODE, Vcpu
from .lapic import kvm_lapic_set_base
from .mm import refs_held_by
from .nested import nested_vmx_enter_non_root_mode, nested_vmx_vmexit
from .requests import (
    KVM_REQ_APIC_PAGE_RELOAD,
    KVM_REQ_APICV_UPDATE,
    KVM_REQ_TLB_FLUSH,
    KVM_REQ_TLB_FLUSH_CURRENT,
    ack_ipi,
    kvm_check_request,
    kvm_request_pending,
)
from .smm import emulator_leave_smm, enter_smm
from .tdp_mmu import RET_PF_EMULATE, kvm_mmu_reload, kvm_tdp_mmu_page_fault
from .tlb import kvm_vcpu_flush_tlb_all, kvm_vcpu_flush_tlb_current
from .vmx import vmx_set_apic_access_page_addr, vmx_vcpu_enter, vmx_vcpu_exit

Steps = Generator[str, None, None]
EINTR = 4
WHAT_OP_DOES = {"x2apic": "x2apic", "disable": "disabled", "xapic": "xapic"}


def vmm_vcpu_thread(vcpu: Vcpu) -> Steps:
    """The VMM's vCPU thread: ioctl(KVM_RUN) again after a signal, until the guest halts."""
    while True:
        r = yield from kvm_arch_vcpu_ioctl_run(vcpu)
        if r == 0:
            break
        yield f"VMM: KVM_RUN returned {r} (KVM_EXIT_INTR); handle the signal, KVM_RUN again"
    vcpu.kept_out = False
    vcpu.exited = True


def kvm_arch_vcpu_ioctl_run(vcpu: Vcpu) -> Generator[str, None, int]:
    """ioctl(KVM_RUN): 0 when the guest halts, -EINTR when a signal is pending."""
    r = yield from vcpu_run(vcpu)
    assert vcpu.mm is not None
    held = refs_held_by(vcpu.mm, vcpu.name)
    if held:
        fail("INV-REF", f"KVM_RUN returned with references held on page {held}")
    return r


def vcpu_run(vcpu: Vcpu) -> Generator[str, None, int]:
    while True:
        note("pass")
        r = yield from vcpu_enter_guest(vcpu)
        if r <= 0:
            return r
        if xfer_to_guest_mode_work_pending(vcpu):
            # xfer_to_guest_mode_handle_work: a pending signal ends KVM_RUN with -EINTR;
            # the requests stay pending for the next KVM_RUN.
            vcpu.signal_pending = False
            return -EINTR


def xfer_to_guest_mode_work_pending(vcpu: Vcpu) -> bool:
    """TIF_SIGPENDING and friends; only signals are modelled (need_resched is preemption)."""
    return vcpu.signal_pending


def kvm_vcpu_update_apicv(vcpu: Vcpu) -> None:
    """Refreshes posted-interrupt and APIC-register virtualization controls; on VMX it never
    touches VIRTUALIZE_APIC_ACCESSES, so nothing of it is modelled beyond consuming the request."""


def kvm_vcpu_reload_apic_access_page(vcpu: Vcpu) -> Steps:
    """static_call_cond(set_apic_access_page_addr): a no-op without flexpriority."""
    kvm = vcpu.kvm
    assert kvm is not None
    if not kvm.flexpriority_enabled:
        return
    yield from vmx_set_apic_access_page_addr(vcpu)


def kvm_vcpu_exit_request(vcpu: Vcpu) -> bool:
    """Late check: a kick (EXITING_GUEST_MODE), any request bit, or pending work bails."""
    return (
        vcpu.mode == EXITING_GUEST_MODE
        or kvm_request_pending(vcpu)
        or xfer_to_guest_mode_work_pending(vcpu)
    )


def local_irq_enable(vcpu: Vcpu) -> None:
    """Interrupts on: a pending IPI is taken now, acknowledging its sender."""
    vcpu.irqs_enabled = True
    if vcpu.ipi_pending:
        ack_ipi(vcpu)


def vcpu_enter_guest(vcpu: Vcpu) -> Generator[str, None, int]:
    if kvm_request_pending(vcpu):
        if kvm_check_request(KVM_REQ_TLB_FLUSH, vcpu):
            kvm_vcpu_flush_tlb_all(vcpu)
            yield "kvm_check_request(KVM_REQ_TLB_FLUSH): kvm_vcpu_flush_tlb_all"
        # kvm_service_local_tlb_flush_requests()
        if kvm_check_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu):
            kvm_vcpu_flush_tlb_current(vcpu)
            yield "kvm_check_request(KVM_REQ_TLB_FLUSH_CURRENT): kvm_vcpu_flush_tlb_current"
        if kvm_check_request(KVM_REQ_APIC_PAGE_RELOAD, vcpu):
            # Ghost for INV-NESTED: a reload consumed in L2 is owed to vmcs01.
            vcpu.reload_owed = vcpu.guest_mode
            note("reload_request")
            yield "kvm_check_request(KVM_REQ_APIC_PAGE_RELOAD)"
            yield from kvm_vcpu_reload_apic_access_page(vcpu)
        if kvm_check_request(KVM_REQ_APICV_UPDATE, vcpu):
            kvm_vcpu_update_apicv(vcpu)
            yield "kvm_check_request(KVM_REQ_APICV_UPDATE): kvm_vcpu_update_apicv"

    # Event injection (and a nested VM-Exit it may cause) is not modelled.
    kvm_mmu_reload(vcpu)
    vcpu.irqs_enabled = False  # preempt_disable(); local_irq_disable()
    yield "kvm_mmu_reload; preempt_disable; local_irq_disable"
    vcpu.mode = IN_GUEST_MODE  # smp_store_release(); smp_mb__after_srcu_read_unlock()
    yield "vcpu->mode = IN_GUEST_MODE; smp_mb__after_srcu_read_unlock"

    if kvm_vcpu_exit_request(vcpu):
        vcpu.mode = OUTSIDE_GUEST_MODE  # smp_wmb()
        note("bail")
        yield "kvm_vcpu_exit_request() is true: vcpu->mode = OUTSIDE_GUEST_MODE, bail"
        local_irq_enable(vcpu)
        yield "local_irq_enable (cancel_injection, return 1)"
        return 1

    vmx_vcpu_enter(vcpu)
    note("vm_enter")
    yield f"VM-Enter ({'L2' if vcpu.guest_mode else 'L1'}, root {vcpu.root})"
    reason = yield from guest_run(vcpu)

    vcpu.mode = OUTSIDE_GUEST_MODE
    yield f"VM-Exit ({reason}); vcpu->mode = OUTSIDE_GUEST_MODE"
    local_irq_enable(vcpu)  # handle_exit_irqoff takes an external interrupt, then irqs on
    yield "handle_exit_irqoff; local_irq_enable"
    r = yield from vmx_handle_exit(vcpu, reason)
    return r


def guest_run(vcpu: Vcpu) -> Generator[str, None, str]:
    """Execute guest operations until something causes a VM-Exit.

    A pending IPI makes the CPU exit at some instruction boundary: the guest may or may not
    get one more operation in first.
    """
    while True:
        if vcpu.ipi_pending and choose(("exit now", "one more instruction"), "IPI") == "exit now":
            vmx_vcpu_exit(vcpu, "EXTERNAL_INTERRUPT")
            yield "guest: IPI arrives, VM-Exit"
            return "EXTERNAL_INTERRUPT"
        op = vcpu.program[vcpu.guest_pc] if vcpu.guest_pc < len(vcpu.program) else "hlt"
        reason = guest_execute(vcpu)
        if reason is not None:
            vmx_vcpu_exit(vcpu, reason)
            yield f"guest: {op} -> VM-Exit ({reason})"
            return reason
        yield f"guest: {op}"


def vmx_handle_exit(vcpu: Vcpu, reason: str) -> Generator[str, None, int]:
    """Dispatch on the exit reason; returning 0 ends KVM_RUN (the guest halted)."""
    if reason == "EXTERNAL_INTERRUPT":
        return 1
    if reason == "HLT":
        return 0
    op = vcpu.program[vcpu.guest_pc]
    if reason == "EPT_VIOLATION":
        r = yield from kvm_tdp_mmu_page_fault(vcpu, faulting_gfn(vcpu))
        if r == RET_PF_EMULATE:
            vcpu.guest_pc += 1  # the access is emulated (MMIO / APIC emulation)
            yield f"handle_ept_violation: emulate the {op} access"
        return 1
    if reason == "MSR_WRITE":
        kvm_lapic_set_base(vcpu, WHAT_OP_DOES[op])
    elif reason == "VMLAUNCH":
        nested_vmx_enter_non_root_mode(vcpu)
    elif reason == "NESTED_VMEXIT":
        nested_vmx_vmexit(vcpu)
    elif reason == "SMI":
        enter_smm(vcpu)
    elif reason == "RSM":
        emulator_leave_smm(vcpu)
    vcpu.guest_pc += 1
    yield f"handle_exit: {op}"
    return 1
