"""The modelled kernel's data: ``struct kvm``, ``struct kvm_vcpu``, the VMM's mm, physical CPUs.

Named after include/linux/kvm_host.h. Every field is plain immutable data (the engine stores
states as tuples), so per-page and per-SPTE tables are tuples indexed by small integers.

Sizes are the smallest that still show every race: two host virtual pages (the APIC-access
page and one ordinary guest page), a handful of physical pages, three EPT roots (L1, SMM and
L2) and two guest frames (the APIC gfn and one ordinary gfn).
"""

from __future__ import annotations

from typing import Any

from ..engine import Struct

PAGE_SHIFT = 12
APIC_DEFAULT_PHYS_BASE = 0xFEE00000
APIC_GFN = APIC_DEFAULT_PHYS_BASE >> PAGE_SHIFT  # 0xfee00
RAM_GFN = 0x100  # one ordinary guest page, in the VMM's RAM memslot

# Host virtual addresses (page numbers) in the VMM: the private APIC slot's vm_mmap()ed page,
# and the guest RAM page behind RAM_GFN.
APIC_HVA = 0x7F001
RAM_HVA = 0x7F100
HVAS = (APIC_HVA, RAM_HVA)
HVA_INDEX = {APIC_HVA: 0, RAM_HVA: 1}

# Memslots: id, base gfn, base hva. Both exist in address space 0 and, with SMM, in 1.
APIC_ACCESS_PAGE_PRIVATE_MEMSLOT = "APIC_ACCESS_PAGE_PRIVATE_MEMSLOT"
RAM_MEMSLOT = "ram"
MEMSLOTS = ((RAM_MEMSLOT, RAM_GFN, RAM_HVA), (APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, APIC_GFN, APIC_HVA))
ADDRESS_SPACES = (0, 1)  # 0: normal, 1: SMM (KVM_ADDRESS_SPACE_NUM = 2 with SMM)

# EPT roots (TDP MMU roots are shared by vCPUs with the same role): L1, L1 in SMM, L2.
ROOT_L1, ROOT_SMM, ROOT_L2 = "L1", "SMM", "L2"
ROOTS = (ROOT_L1, ROOT_SMM, ROOT_L2)
GFNS = (APIC_GFN, RAM_GFN)
ROOT_AS = {ROOT_L1: 0, ROOT_SMM: 1, ROOT_L2: 0}

# vcpu->mode
OUTSIDE_GUEST_MODE = "OUTSIDE_GUEST_MODE"
IN_GUEST_MODE = "IN_GUEST_MODE"
EXITING_GUEST_MODE = "EXITING_GUEST_MODE"
READING_SHADOW_PAGE_TABLES = "READING_SHADOW_PAGE_TABLES"

# Primary-MMU page-table entries: a pfn, None (pte_none) or a migration entry.
MIGRATION = "migration"

NR_PAGES = 6  # physical pages in the model; freed pages are reused (lowest pfn first)

Pte = Any  # int | None | tuple[str, int]


class Mm(Struct):
    """The VMM process's mm plus the physical pages (struct page state) it uses."""

    name: str = "mm"
    pte: tuple[Pte, ...] = (0, 1)  # per HVAS: the VMM's page-table entry
    mapping: tuple[int | None, ...] = (0, 1)  # per HVAS: page in the shmem/page cache
    shmem: bool = True  # the APIC page is MAP_SHARED|MAP_ANONYMOUS (shmem) in 6.x
    page_live: tuple[bool, ...] = (True, True, False, False, False, False)
    page_ref: tuple[int, ...] = (2, 2, 0, 0, 0, 0)  # page cache + mapping; GUP adds one
    page_owner: tuple[int | None, ...] = (APIC_HVA, RAM_HVA, None, None, None, None)
    page_used: tuple[bool, ...] = (True, True, False, False, False, False)  # ever allocated
    page_locked: tuple[bool, ...] = (False,) * NR_PAGES  # folio lock (held by migration)
    pinned: tuple[bool, ...] = (False,) * NR_PAGES  # long-term pin (FOLL_LONGTERM / kept ref)
    inflight: tuple[tuple[int, int], ...] = ()  # ghost: notifier ranges between start and end
    gup_refs: tuple[tuple[str, int], ...] = ()  # ghost: (thread, page) references from GUP
    kvm: Kvm | None = None  # the one MMU-notifier subscriber


class Kvm(Struct):
    """struct kvm (and kvm->arch): mmu_lock, the invalidation bookkeeping, memslots, SPTEs."""

    name: str = "kvm"
    mmu_lock_writer: bool = False
    mmu_lock_readers: int = 0
    mmu_invalidate_seq: int = 0
    mmu_invalidate_in_progress: int = 0
    mmu_invalidate_range_start: int | None = None
    mmu_invalidate_range_end: int | None = None
    mn_active_invalidate_count: int = 0
    apic_slot_invalid: bool = False  # KVM_MEMSLOT_INVALID on the private APIC slot
    apicv_active: bool = True  # kvm_apicv_activated(): no VM-wide APICv inhibit
    spte: frozenset[tuple[str, int, int]] = frozenset()  # present leaf SPTEs: (root, gfn, pfn)
    flexpriority_enabled: bool = True
    smm_enabled: bool = True  # the VM has the SMM address space (KVM_ADDRESS_SPACE_NUM = 2)
    gup_fail_budget: int = 0  # environment knob: how many GUPs may still fail (-ENOMEM)
    any_order_kicks: bool = False  # knob: request/kick the vCPUs in any order, not by index
    # Ghost state, read only by properties: never by the modelled kernel.
    vcpus: tuple[Vcpu, ...] = ()
    pcpus: tuple[Pcpu, ...] = ()
    mm: Mm | None = None  # kvm->mm: the VMM's mm
    apic_access_page: int | None = None  # kvm->arch.apic_access_page: pinned designs only
    reload_window: bool = False  # an APIC reload was requested inside an invalidation
    reload_retried: bool = False
    apic_moved: bool = False  # the APIC page changed physical page at least once
    moved_and_used: bool = False  # a guest APIC access was virtualized with the new page


class Vcpu(Struct):
    """struct kvm_vcpu with the VMX and nested state the protocol touches."""

    name: str = "vcpu0"
    vcpu_idx: int = 0
    cpu: int = 0  # the physical CPU it runs on (vcpu->cpu)
    mode: str = OUTSIDE_GUEST_MODE
    requests: frozenset[str] = frozenset()
    irqs_enabled: bool = True
    ipi_pending: bool = False  # an IPI to vcpu->cpu not yet taken
    in_guest: bool = False  # executing guest code (between VM-Enter and VM-Exit)
    guest_mode: bool = False  # is_guest_mode(): L2 active, vmcs02 loaded
    smm: bool = False  # is_smm()
    root: str | None = None  # vcpu->arch.mmu->root.hpa (None = INVALID_PAGE)
    apic_mode: str = "xapic"  # kvm_get_apic_mode(): "xapic", "x2apic" or "disabled"
    virtualize_apic_accesses: bool = True  # vmcs01 SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES
    apic_access_addr: int | None = None  # vmcs01 APIC_ACCESS_ADDR (as a pfn)
    reload_vmcs01_apic_access_page: bool = False  # nested.reload_vmcs01_apic_access_page
    change_vmcs01_virtual_apic_mode: bool = False  # nested.change_vmcs01_virtual_apic_mode
    program: tuple[str, ...] = ()  # the guest's script (see guest.py)
    guest_pc: int = 0
    exit_reason: str | None = None
    reload_owed: bool = False  # ghost: a reload was consumed in L2, vmcs01 not yet updated
    kept_out: bool = False  # ghost: asked by an invalidation to leave, not yet back in the guest
    exited: bool = False  # ghost: KVM_RUN has returned for good
    signal_pending: bool = False  # TIF_SIGPENDING on the vCPU thread
    preemptions_left: int = 0  # environment knob: moves to another pCPU still allowed
    ctl_owed: frozenset[str] = frozenset()  # ghost: requests owed since the control went 0->1
    kvm: Kvm | None = None
    mm: Mm | None = None


class Pcpu(Struct):
    """A physical CPU: its TLB of guest-physical translations, tagged by EPTP (root)."""

    name: str = "cpu0"
    tlb: frozenset[tuple[str, int, int]] = frozenset()  # (root, gfn, pfn)


class Machine(Struct):
    """The root of the world: everything the properties look at."""

    name: str = ""
    kvm: Kvm | None = None
    mm: Mm | None = None


def spte_get(kvm: Kvm, root: str, gfn: int) -> int | None:
    for r, g, pfn in kvm.spte:
        if r == root and g == gfn:
            return pfn
    return None


def spte_set(kvm: Kvm, root: str, gfn: int, pfn: int | None) -> None:
    """Install (pfn) or zap (None) the leaf SPTE for gfn in root."""
    kept = frozenset(e for e in kvm.spte if not (e[0] == root and e[1] == gfn))
    kvm.spte = kept if pfn is None else kept | {(root, gfn, pfn)}


def replace(values: tuple[Any, ...], index: int, value: Any) -> tuple[Any, ...]:
    return values[:index] + (value,) + values[index + 1 :]


def gfn_to_hva(gfn: int) -> int | None:
    for _slot, base_gfn, base_hva in MEMSLOTS:
        if gfn == base_gfn:
            return base_hva
    return None


def hva_to_gfn(hva: int) -> int | None:
    for _slot, base_gfn, base_hva in MEMSLOTS:
        if hva == base_hva:
            return base_gfn
    return None


def memslot_of_gfn(gfn: int) -> str | None:
    for slot, base_gfn, _hva in MEMSLOTS:
        if gfn == base_gfn:
            return slot
    return None
