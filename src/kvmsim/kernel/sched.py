"""The environment around the vCPU thread: preemption onto another CPU, and signals.

Both are nondeterministic choices a scenario can switch on, with a budget so that the state
space stays finite: the checker explores every point at which they can happen.
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import await_, choose
from .kvm_host import Kvm, Vcpu
from .requests import KVM_REQ_TLB_FLUSH, kvm_make_request, kvm_vcpu_kick

Steps = Generator[str, None, None]


def scheduler(kvm: Kvm, vcpu: Vcpu) -> Steps:
    """Preempt the vCPU thread wherever it is preemptible and resume it on another CPU.

    The thread is preemptible outside the interrupts-off window of vcpu_enter_guest (and not
    once KVM_RUN is over for good).
    """
    while vcpu.preemptions_left:
        await_(vcpu.irqs_enabled and not vcpu.exited)
        others = tuple(i for i in range(len(kvm.pcpus)) if i != vcpu.cpu)
        cpu = choose(others, "resume on")
        vcpu.preemptions_left -= 1
        kvm_sched_out(vcpu)
        kvm_sched_in(vcpu, cpu)
        yield f"schedule(): {vcpu.name} preempted, kvm_sched_in on cpu{cpu}"


def kvm_sched_out(vcpu: Vcpu) -> None:
    """kvm_arch_vcpu_put: nothing the protocol sees."""


def kvm_sched_in(vcpu: Vcpu, cpu: int) -> None:
    """kvm_arch_vcpu_load on the new CPU: vmx_vcpu_load_vmcs finds the VMCS last loaded
    elsewhere and requests a TLB flush, since the new CPU may hold stale translations."""
    if vcpu.cpu != cpu:
        vcpu.cpu = cpu
        kvm_make_request(KVM_REQ_TLB_FLUSH, vcpu)


def vmm_signal(vcpu: Vcpu, count: int) -> Steps:
    """Another VMM thread sends the vCPU thread a signal (pthread_kill), which kicks it."""
    for _ in range(count):
        await_(not vcpu.exited and not vcpu.signal_pending)
        vcpu.signal_pending = True
        kvm_vcpu_kick(vcpu)
        yield f"VMM: signal {vcpu.name}'s thread (kvm_vcpu_kick)"
