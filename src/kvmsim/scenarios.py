"""Named scenarios: how many vCPUs, what each guest does, what the host does to memory.

A scenario is data only; the checker explores every interleaving of the actors it creates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kernel.guest import validate_program

HOST_OP_NAMES = ("migrate", "zap", "swapout", "touch", "protect")
TARGETS = ("apic", "ram")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    vcpus: tuple[tuple[str, ...], ...]  # one guest program per vCPU
    host: tuple[tuple[tuple[str, str], ...], ...]  # one (op, target) sequence per host thread
    shmem: bool = True  # the APIC page is shmem (MAP_SHARED|MAP_ANONYMOUS), as in 6.x
    gup_failures: int = 0  # knob: GUP may fail (-ENOMEM) this many times
    preemptions: int = 0  # knob: the vCPU thread may be moved to another pCPU this many times
    signals: int = 0  # knob: a signal may end KVM_RUN this many times (the VMM re-enters)
    apicv_toggle: bool = False  # knob: the VMM inhibits APICv VM-wide, then re-activates it
    smm: bool = True  # the VM has the SMM address space
    migrate_passes: int = 2
    # knob: kvm_make_all_cpus_request visits the vCPUs in any order, not by index: a sound
    # over-approximation that makes identical vCPUs interchangeable (the model then declares
    # them symmetric, for Options(symmetry=True) / check --symmetry)
    any_order_kicks: bool = False
    default: bool = True
    properties: tuple[str, ...] = field(default=())  # extra, non-default properties

    def validate(self) -> None:
        if not 1 <= len(self.vcpus) <= 3:
            raise ValueError(f"scenario {self.name!r}: 1 to 3 vCPUs, not {len(self.vcpus)}")
        for i, program in enumerate(self.vcpus):
            try:
                validate_program(program)
            except ValueError as exc:
                raise ValueError(f"scenario {self.name!r}, vcpu{i}: {exc}") from None
        for thread in self.host:
            for op, target in thread:
                if op not in HOST_OP_NAMES or target not in TARGETS:
                    raise ValueError(f"scenario {self.name!r}: bad host operation {op} {target}")


APIC_TWICE = ("apic", "apic")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "migrate",
            "1 vCPU touching the APIC page twice while the host migrates it",
            (APIC_TWICE,),
            ((("migrate", "apic"),),),
        ),
        Scenario(
            "two-vcpus-migrate",
            "2 vCPUs, each touching the APIC page, while the host migrates it",
            (("apic",), ("apic",)),
            ((("migrate", "apic"),),),
        ),
        Scenario(
            "zap",
            "1 vCPU; MADV_DONTNEED on the APIC page (shmem: the page stays in the page cache)",
            (APIC_TWICE,),
            ((("zap", "apic"),),),
        ),
        Scenario(
            "zap-anon",
            "As zap, but the page is private anonymous memory: freed before or after range_end",
            (APIC_TWICE,),
            ((("zap", "apic"),),),
            shmem=False,
        ),
        Scenario(
            "swap",
            "1 vCPU; the host swaps the APIC page out, then the VMM touches it again",
            (APIC_TWICE,),
            ((("swapout", "apic"), ("touch", "apic")),),
        ),
        Scenario(
            "back-to-back",
            "1 vCPU; two migrations of the APIC page, one after the other",
            (APIC_TWICE,),
            ((("migrate", "apic"), ("migrate", "apic")),),
        ),
        Scenario(
            "unrelated-overlap",
            "1 vCPU; an APIC-page migration overlapping an invalidation of ordinary guest memory",
            (("apic", "ram"),),
            ((("migrate", "apic"),), (("protect", "ram"),)),
        ),
        Scenario(
            "x2apic-switch",
            "1 vCPU switching xAPIC -> x2APIC -> disabled -> xAPIC while the page migrates",
            (("apic", "x2apic", "disable", "xapic", "apic"),),
            ((("migrate", "apic"),),),
        ),
        Scenario(
            "x2apic-migrate",
            "1 vCPU in x2APIC mode (control off) touching 0xfee00000 as memory while it migrates",
            (("x2apic", "apic", "apic"),),
            ((("migrate", "apic"),),),
        ),
        Scenario(
            "nested",
            "1 vCPU running L2 while the page migrates, then back in L1",
            (("vmlaunch", "apic", "vmexit", "apic"),),
            ((("migrate", "apic"),),),
        ),
        Scenario(
            "smm",
            "1 vCPU entering and leaving SMM (address space 1) while the page migrates",
            (("smi", "apic", "rsm", "apic"),),
            ((("migrate", "apic"),),),
        ),
        Scenario(
            "gup-fails",
            "1 vCPU; the page migrates and one GUP may fail transiently (-ENOMEM)",
            (APIC_TWICE,),
            ((("migrate", "apic"),),),
            gup_failures=1,
            default=False,
        ),
        Scenario(
            "preempted",
            "1 vCPU whose thread may be preempted once and resumed on another CPU, while the "
            "page migrates",
            (APIC_TWICE,),
            ((("migrate", "apic"),),),
            preemptions=1,
            default=False,
        ),
        Scenario(
            "signal",
            "1 vCPU; a signal may end KVM_RUN once (the VMM re-enters) while the page migrates",
            (APIC_TWICE,),
            ((("migrate", "apic"),),),
            signals=1,
            default=False,
        ),
        Scenario(
            "apicv-inhibit",
            "1 vCPU; the VMM inhibits APICv VM-wide and re-activates it while the page migrates",
            (APIC_TWICE,),
            ((("migrate", "apic"),),),
            apicv_toggle=True,
            default=False,
        ),
        Scenario(
            "three-vcpus-migrate",
            "3 vCPUs, each touching the APIC page, while the host migrates it",
            (("apic",), ("apic",), ("apic",)),
            ((("migrate", "apic"),),),
            default=False,
        ),
        Scenario(
            "two-vcpus-any-order",
            "As two-vcpus-migrate, but requests and kicks visit the vCPUs in any order (an "
            "over-approximation under which the vCPUs are symmetric: check --symmetry)",
            (("apic",), ("apic",)),
            ((("migrate", "apic"),),),
            any_order_kicks=True,
            default=False,
        ),
        Scenario(
            "three-vcpus-any-order",
            "As three-vcpus-migrate, with requests and kicks in any order (check --symmetry)",
            (("apic",), ("apic",), ("apic",)),
            ((("migrate", "apic"),),),
            any_order_kicks=True,
            default=False,
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None


def default_scenarios() -> list[Scenario]:
    return [s for s in SCENARIOS.values() if s.default]
