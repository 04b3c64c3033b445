"""Build a checkable model of the KVM machinery for one variant and one scenario."""

from __future__ import annotations

from . import properties
from .engine import Model, Setup
from .kernel.kvm_host import (
    APIC_GFN,
    APIC_HVA,
    NR_PAGES,
    RAM_GFN,
    RAM_HVA,
    ROOT_L1,
    Kvm,
    Machine,
    Mm,
    Pcpu,
    Vcpu,
)
from .scenarios import Scenario
from .variants import Variant

TARGET_HVA = {"apic": APIC_HVA, "ram": RAM_HVA}


def initial_mm(scenario: Scenario) -> Mm:
    """Both pages mapped: page 0 behind the APIC hva, page 1 behind the RAM hva.

    shmem pages carry the page cache's reference and the mapping's; anonymous ones only the
    mapping's.
    """
    ref = 2 if scenario.shmem else 1
    return Mm(
        pte=(0, 1),
        mapping=(0, 1) if scenario.shmem else (None, None),
        shmem=scenario.shmem,
        page_live=(True, True) + (False,) * (NR_PAGES - 2),
        page_ref=(ref, ref) + (0,) * (NR_PAGES - 2),
        page_owner=(APIC_HVA, RAM_HVA) + (None,) * (NR_PAGES - 2),
        page_used=(True, True) + (False,) * (NR_PAGES - 2),
    )


def build_machine(scenario: Scenario) -> Machine:
    """A VM that has been running: vmcs01 holds page 0, L1's root maps both gfns, and each
    CPU's TLB caches both translations (so stale entries must really be flushed)."""
    mm = initial_mm(scenario)
    spte = frozenset({(ROOT_L1, APIC_GFN, 0), (ROOT_L1, RAM_GFN, 1)})
    kvm = Kvm(
        mm=mm,
        spte=spte,
        smm_enabled=scenario.smm,
        gup_fail_budget=scenario.gup_failures,
        any_order_kicks=scenario.any_order_kicks,
    )
    # One spare CPU when vCPU threads may be moved; it too caches the old translations
    # (the vCPU ran there before), so moving onto it must flush.
    spare = 1 if scenario.preemptions else 0
    pcpus = tuple(
        Pcpu(name=f"cpu{i}", tlb=frozenset({(ROOT_L1, APIC_GFN, 0), (ROOT_L1, RAM_GFN, 1)}))
        for i in range(len(scenario.vcpus) + spare)
    )
    vcpus = tuple(
        Vcpu(
            name=f"vcpu{i}",
            vcpu_idx=i,
            cpu=i,
            root=ROOT_L1,
            apic_access_addr=0,
            program=program,
            kvm=kvm,
            mm=mm,
            preemptions_left=scenario.preemptions if i == 0 else 0,
        )
        for i, program in enumerate(scenario.vcpus)
    )
    kvm.vcpus = vcpus
    kvm.pcpus = pcpus
    mm.kvm = kvm
    return Machine(kvm=kvm, mm=mm)


def create_vm(variant: Variant, scenario: Scenario) -> Machine:
    """The machine, after the variant's own VM-creation code ran (kvm_alloc_apic_access_page)."""
    machine = build_machine(scenario)
    assert machine.kvm is not None
    variant.namespace()["kvm_alloc_apic_access_page"](machine.kvm)
    return machine


def symmetric_vcpus(scenario: Scenario) -> bool:
    """Whether the scenario's vCPUs are interchangeable: several, running the same guest
    program, requested and kicked in any order (by index, vcpu0 is always asked first), and
    no knob that singles one out (preemption, signals act on the first vCPU)."""
    return (
        len(scenario.vcpus) > 1
        and len(set(scenario.vcpus)) == 1
        and scenario.any_order_kicks
        and not scenario.preemptions
        and not scenario.signals
    )


def build_model(variant: Variant, scenario: Scenario, extra: tuple[str, ...] = ()) -> Model:
    scenario.validate()
    ns = variant.namespace()
    model = Model(
        f"{variant.name} / {scenario.name}",
        f"{scenario.description} (variant {variant.name})",
        deadlock=True,
    )

    @model.setup
    def setup(s: Setup) -> Machine:
        machine = create_vm(variant, scenario)
        kvm = machine.kvm
        assert kvm is not None and machine.mm is not None
        for vcpu in kvm.vcpus:
            s.actor(vcpu.name, ns["vmm_vcpu_thread"], vcpu, must_finish=True, lane=f"CPU{vcpu.cpu}")
        for j, thread in enumerate(scenario.host):
            ops: tuple[tuple[str, int, int], ...] = tuple(
                (op, TARGET_HVA[target], scenario.migrate_passes) for op, target in thread
            )
            s.actor(
                f"host{j}", ns["host_thread"], machine.mm, ops, must_finish=True, lane=f"host{j}"
            )
        first = kvm.vcpus[0]
        if scenario.preemptions:
            s.actor("sched", ns["scheduler"], kvm, first, daemon=True, lane="sched")
        if scenario.signals:
            s.actor("signal", ns["vmm_signal"], first, scenario.signals, daemon=True, lane="VMM")
        if scenario.apicv_toggle:
            s.actor("apicv", ns["vmm_toggle_apicv"], kvm, must_finish=True, lane="VMM")
        if symmetric_vcpus(scenario):
            s.symmetric(
                [(v.name, (v, kvm.pcpus[v.cpu])) for v in kvm.vcpus],
                unordered=((kvm, "vcpus"), (kvm, "pcpus")),
                identity=("name", "vcpu_idx", "cpu"),
            )
        return machine

    properties.install(model, extra + scenario.properties)

    @model.cost
    def kept_out(machine: Machine) -> dict[str, int]:
        """Each step taken while a vCPU waits to re-enter after an invalidation kicked it."""
        assert machine.kvm is not None
        return {"out_of_guest_steps": sum(v.kept_out for v in machine.kvm.vcpus)}

    return model
