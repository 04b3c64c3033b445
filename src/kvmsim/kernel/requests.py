"""vCPU requests, kicks and the IPIs that carry them (virt/kvm/kvm_main.c, kvm_host.h).

A request is a bit in ``vcpu->requests``; requests with ``KVM_REQUEST_WAIT`` make the requester
IPI every vCPU that might be in guest mode and wait until each has taken the IPI. An IPI is
taken only while the target has interrupts enabled, and a vCPU keeps them disabled from just
before it sets IN_GUEST_MODE until it has set OUTSIDE_GUEST_MODE again, so an acknowledged
IPI means "that vCPU is out of guest mode and will see the bit before its next VM-Enter".

Simplification: the request bitmap is a set of names and set_bit/test_bit are atomic steps;
the smp_wmb/smp_mb pairs are implied by sequential consistency (see docs/model.md).
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import await_, choose, current_actor, fail, note
from .kvm_host import (
    EXITING_GUEST_MODE,
    IN_GUEST_MODE,
    OUTSIDE_GUEST_MODE,
    Kvm,
    Vcpu,
)

Steps = Generator[str, None, None]

KVM_REQ_TLB_FLUSH = "KVM_REQ_TLB_FLUSH"
KVM_REQ_APIC_PAGE_RELOAD = "KVM_REQ_APIC_PAGE_RELOAD"
KVM_REQ_TLB_FLUSH_CURRENT = "KVM_REQ_TLB_FLUSH_CURRENT"
KVM_REQ_APICV_UPDATE = "KVM_REQ_APICV_UPDATE"
KVM_REQ_MMU_FREE_OBSOLETE_ROOTS = "KVM_REQ_MMU_FREE_OBSOLETE_ROOTS"

# Flags of each request (include/linux/kvm_host.h, arch/x86/include/asm/kvm_host.h).
KVM_REQUEST_WAIT = "WAIT"
KVM_REQUEST_NO_WAKEUP = "NO_WAKEUP"
REQUEST_FLAGS: dict[str, frozenset[str]] = {
    KVM_REQ_TLB_FLUSH: frozenset({KVM_REQUEST_WAIT, KVM_REQUEST_NO_WAKEUP}),
    KVM_REQ_APIC_PAGE_RELOAD: frozenset({KVM_REQUEST_WAIT, KVM_REQUEST_NO_WAKEUP}),
    KVM_REQ_TLB_FLUSH_CURRENT: frozenset(),
    KVM_REQ_APICV_UPDATE: frozenset({KVM_REQUEST_WAIT, KVM_REQUEST_NO_WAKEUP}),
    KVM_REQ_MMU_FREE_OBSOLETE_ROOTS: frozenset({KVM_REQUEST_WAIT, KVM_REQUEST_NO_WAKEUP}),
}


def kvm_make_request(req: str, vcpu: Vcpu) -> None:
    """__kvm_make_request: smp_wmb() then set_bit(). No kick."""
    vcpu.requests = vcpu.requests | {req}
    _ghost_on_request(req, vcpu)


def _ghost_on_request(req: str, vcpu: Vcpu) -> None:
    # Ghost bookkeeping for INV-CTL: the 0->1 control switch owes a reload and a flush.
    if vcpu.ctl_owed:
        if req == KVM_REQ_APIC_PAGE_RELOAD:
            vcpu.ctl_owed = vcpu.ctl_owed - {"reload"}
        elif req in (KVM_REQ_TLB_FLUSH, KVM_REQ_TLB_FLUSH_CURRENT):
            vcpu.ctl_owed = vcpu.ctl_owed - {"flush"}


def kvm_request_pending(vcpu: Vcpu) -> bool:
    """READ_ONCE(vcpu->requests) != 0."""
    return bool(vcpu.requests)


def kvm_test_request(req: str, vcpu: Vcpu) -> bool:
    return req in vcpu.requests


def kvm_clear_request(req: str, vcpu: Vcpu) -> None:
    vcpu.requests = vcpu.requests - {req}


def kvm_check_request(req: str, vcpu: Vcpu) -> bool:
    """Test, then clear (+ smp_mb__after_atomic); only the vCPU's own thread clears its bits."""
    if req in vcpu.requests:
        vcpu.requests = vcpu.requests - {req}
        return True
    return False


def kvm_vcpu_exiting_guest_mode(vcpu: Vcpu) -> str:
    """cmpxchg(&vcpu->mode, IN_GUEST_MODE, EXITING_GUEST_MODE); returns the old mode."""
    old = vcpu.mode
    if old == IN_GUEST_MODE:
        vcpu.mode = EXITING_GUEST_MODE
    return old


def kvm_request_needs_ipi(vcpu: Vcpu, req: str) -> bool:
    """With WAIT, IPI unless OUTSIDE_GUEST_MODE; without, only if it was IN_GUEST_MODE."""
    mode = kvm_vcpu_exiting_guest_mode(vcpu)
    if KVM_REQUEST_WAIT in REQUEST_FLAGS.get(req, frozenset()):
        return mode != OUTSIDE_GUEST_MODE
    return mode == IN_GUEST_MODE


def kvm_make_vcpu_request(vcpu: Vcpu, req: str, mask: tuple[Vcpu, ...]) -> tuple[Vcpu, ...]:
    """Set the bit, then add the vCPU's CPU to the IPI mask if it may be in guest mode.

    Simplification: no vCPU is ever blocked in kvm_vcpu_block here (guests do not HLT
    while the host acts), so the NO_WAKEUP wake-up branch is never taken.
    """
    kvm_make_request(req, vcpu)
    if kvm_request_needs_ipi(vcpu, req):
        mask = mask + (vcpu,)
    return mask


def kvm_make_all_cpus_request(kvm: Kvm, req: str) -> Steps:
    """kvm_make_all_cpus_request_except(kvm, req, NULL): request on every vCPU, then kick.

    One step per vCPU: the set_bit + mode cmpxchg is where the Dekker handshake with that
    vCPU's "mode = IN_GUEST_MODE; read requests" happens.
    """
    mask: tuple[Vcpu, ...] = ()
    requester_is_vcpu = any(v.name == current_actor() for v in kvm.vcpus)
    if kvm.any_order_kicks:
        mask = yield from request_in_any_order(kvm, req, requester_is_vcpu)
    for vcpu in () if kvm.any_order_kicks else kvm.vcpus:
        mask = kvm_make_vcpu_request(vcpu, req, mask)
        if not requester_is_vcpu and not vcpu.exited:
            # Ghost for the "kept out of the guest" cost: another thread (an invalidation,
            # whatever its notifier hook) asked this vCPU to leave the guest.
            vcpu.kept_out = True
        yield f"{req} -> {vcpu.name}" + (" (needs an IPI)" if mask and mask[-1] is vcpu else "")
    wait = KVM_REQUEST_WAIT in REQUEST_FLAGS.get(req, frozenset())
    yield from kvm_kick_many_cpus(mask, wait)
    if wait:
        check_wait_guarantee(kvm, req)
    if req == KVM_REQ_APIC_PAGE_RELOAD and kvm.mmu_invalidate_in_progress:
        kvm.reload_window = True  # ghost for STALL-6.5: every vCPU has seen the request


def request_in_any_order(
    kvm: Kvm, req: str, requester_is_vcpu: bool
) -> Generator[str, None, tuple[Vcpu, ...]]:
    """The request loop of kvm_make_all_cpus_request visiting the vCPUs in any order.

    The kernel goes by index; letting the search pick the order is an over-approximation
    (every index order is among the behaviours) that makes identical vCPUs interchangeable,
    so a symmetry reduction may store one state per renaming of them (Scenario
    any_order_kicks).
    """
    mask: tuple[Vcpu, ...] = ()
    todo = frozenset(kvm.vcpus)
    while todo:
        vcpu = choose(sorted(todo, key=lambda v: v.vcpu_idx), "next vCPU")
        todo = todo - {vcpu}
        mask = kvm_make_vcpu_request(vcpu, req, mask)
        if not requester_is_vcpu and not vcpu.exited:
            vcpu.kept_out = True  # the ghost for the "kept out of the guest" cost, as above
        yield f"{req} -> {vcpu.name}" + (" (needs an IPI)" if mask and mask[-1] is vcpu else "")
    return mask


def check_wait_guarantee(kvm: Kvm, req: str) -> None:
    """INV-WAIT, checked when a WAIT request returns: no vCPU runs guest code without it.

    A vCPU may be in the guest again if it consumed the request after it was made; it may
    not be in the guest with the request still unconsumed.
    """
    for vcpu in kvm.vcpus:
        if vcpu.in_guest and req in vcpu.requests:
            fail(
                "INV-WAIT",
                f"kvm_make_all_cpus_request({req}) returned while {vcpu.name} executes guest "
                "code without having seen the request",
            )


def kvm_kick_many_cpus(mask: tuple[Vcpu, ...], wait: bool) -> Steps:
    """smp_call_function_many(mask, ack_kick, NULL, wait): send IPIs, maybe wait for each."""
    if not mask:
        return
    for vcpu in mask:
        send_ipi(vcpu)
    yield "smp_call_function_many: send IPIs to " + ", ".join(v.name for v in mask)
    if wait:
        await_(all(not v.ipi_pending for v in mask))
        yield "smp_call_function_many: every IPI acknowledged"


def kvm_vcpu_kick(vcpu: Vcpu) -> None:
    """Kick without a request: IN_GUEST -> EXITING and an IPI; no waiting."""
    if kvm_vcpu_exiting_guest_mode(vcpu) == IN_GUEST_MODE:
        send_ipi(vcpu)


def send_ipi(vcpu: Vcpu) -> None:
    """An IPI to vcpu->cpu. A CPU running with interrupts enabled takes it at once.

    Simplification: a target that has interrupts enabled when the IPI is sent acknowledges it
    immediately (it cannot first disable them and delay the acknowledgement).
    """
    note("ipi")
    if vcpu.irqs_enabled:
        ack_ipi(vcpu)
    else:
        vcpu.ipi_pending = True


def ack_ipi(vcpu: Vcpu) -> None:
    """The target CPU takes a pending IPI (ack_kick is empty): the sender may stop waiting."""
    vcpu.ipi_pending = False
