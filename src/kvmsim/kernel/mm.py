"""Physical pages, reference counts, and GUP as KVM uses it (mm/, virt/kvm/kvm_main.c).

A page is live while its reference count is positive; the last ``put_page`` frees it, and a
freed pfn may be handed out again by the next allocation (lowest pfn first), which is what
makes a stale translation dangerous: it may now point at somebody else's data.

Simplifications (listed in docs/model.md): folios are single pages; the page allocator,
LRU isolation and the buddy system are reduced to "lowest free pfn"; GUP is
``get_user_pages_unlocked`` on one page with FOLL_WRITE, one atomic step per PTE walk.
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import await_, choose, current_actor, fail
from .kvm_host import APIC_HVA, HVA_INDEX, MIGRATION, NR_PAGES, Kvm, Mm, Pte, replace

Steps = Generator[str, None, None]


def is_migration_entry(pte: Pte) -> bool:
    return isinstance(pte, tuple) and pte[0] == MIGRATION


def alloc_page(mm: Mm, owner: int) -> int:
    """Take a never-used pfn if there is one, else the lowest freed one; one reference.

    Fresh pages first, so a stale pfn never looks right by coincidence (an ABA the real
    allocator makes unlikely); reuse still happens once fresh pages run out.
    """
    free = [p for p in range(NR_PAGES) if not mm.page_live[p] and mm.page_ref[p] == 0]
    if not free:
        raise RuntimeError("the model ran out of physical pages; raise NR_PAGES")
    fresh = [p for p in free if not mm.page_used[p]]
    pfn = (fresh or free)[0]
    mm.page_live = replace(mm.page_live, pfn, True)
    mm.page_used = replace(mm.page_used, pfn, True)
    mm.page_ref = replace(mm.page_ref, pfn, 1)
    mm.page_owner = replace(mm.page_owner, pfn, owner)
    return pfn


def get_page(mm: Mm, pfn: int) -> None:
    if not mm.page_live[pfn]:
        fail("INV-NOFREE", f"a reference was taken on freed page {pfn}")
    mm.page_ref = replace(mm.page_ref, pfn, mm.page_ref[pfn] + 1)


def put_page(mm: Mm, pfn: int) -> None:
    """Drop a reference; the last one frees the page."""
    if mm.page_ref[pfn] <= 0:
        fail("INV-REF", f"put_page on page {pfn} whose reference count is already 0")
    held = (current_actor(), pfn)
    if held in mm.gup_refs:  # ghost: this thread drops a reference its GUP took
        refs = list(mm.gup_refs)
        refs.remove(held)
        mm.gup_refs = tuple(refs)
    ref = mm.page_ref[pfn] - 1
    mm.page_ref = replace(mm.page_ref, pfn, ref)
    if ref == 0:
        free_page(mm, pfn)


def free_page(mm: Mm, pfn: int) -> None:
    """Return the page to the allocator. LIVE-FLUSH: nothing may still translate to it."""
    kvm = mm.kvm
    if kvm is not None:
        check_nothing_translates_to(kvm, pfn)
    mm.page_live = replace(mm.page_live, pfn, False)
    mm.page_owner = replace(mm.page_owner, pfn, None)


def check_nothing_translates_to(kvm: Kvm, pfn: int) -> None:
    """LIVE-FLUSH: when a page is freed no SPTE maps it, and a CPU whose TLB still caches
    it is not running guest code and has a TLB flush pending before it runs any."""
    for vcpu in kvm.vcpus:
        pcpu = kvm.pcpus[vcpu.cpu]
        for root, gfn, target in pcpu.tlb:
            if target != pfn:
                continue
            if vcpu.in_guest or "KVM_REQ_TLB_FLUSH" not in vcpu.requests:
                fail(
                    "LIVE-FLUSH",
                    f"page {pfn} was freed while {pcpu.name}'s TLB maps gfn {gfn:#x} to it "
                    f"(EPTP {root}) and {vcpu.name} "
                    + ("runs guest code" if vcpu.in_guest else "has no TLB flush pending"),
                )
    for root, gfn, mapped in kvm.spte:
        if mapped == pfn:
            fail(
                "LIVE-FLUSH",
                f"page {pfn} was freed while the SPTE for gfn {gfn:#x} in root {root} maps it",
            )


# -- GUP --------------------------------------------------------------------------------


def hva_to_pfn(mm: Mm, hva: int) -> Generator[str, None, int | None]:
    """get_user_pages_unlocked(hva, 1, FOLL_WRITE): fault the page in, take a reference.

    A migration entry makes the caller wait for the folio lock (migration_entry_wait) and
    walk again; a none PTE is faulted in (shmem: from the page cache, or swapped in to a
    new page). Returns the pfn, or None for an error pfn (a transient -ENOMEM, if the
    scenario allows GUP to fail).
    """
    i = HVA_INDEX[hva]
    while True:
        kvm = mm.kvm
        if kvm is not None and kvm.gup_fail_budget and choose((False, True), "GUP fails"):
            kvm.gup_fail_budget -= 1  # environment knob: a transient -ENOMEM
            yield "hva_to_pfn: GUP fails (-ENOMEM)"
            return None
        pte = mm.pte[i]
        if is_migration_entry(pte):
            yield "hva_to_pfn: migration entry, migration_entry_wait()"
            await_(not mm.page_locked[pte[1]])
            continue
        if pte is None:
            handle_mm_fault(mm, hva)
            yield "hva_to_pfn: pte_none, handle_mm_fault() maps the page"
            continue
        get_page(mm, pte)
        mm.gup_refs = mm.gup_refs + ((current_actor(), pte),)  # ghost for INV-REF
        yield f"hva_to_pfn: get_page({pte})"
        return int(pte)


def handle_mm_fault(mm: Mm, hva: int) -> None:
    """Map the page behind hva: from the shmem page cache, else a new (swapped-in) page."""
    i = HVA_INDEX[hva]
    pfn = mm.mapping[i] if mm.shmem else None
    if pfn is None:
        pfn = alloc_page(mm, hva)  # the allocation reference becomes the cache reference
        if mm.kvm is not None and hva == APIC_HVA:
            mm.kvm.apic_moved = True  # ghost: the APIC hva is now backed by another page
        if mm.shmem:
            mm.mapping = replace(mm.mapping, i, pfn)
            get_page(mm, pfn)  # and the mapping's reference
    else:
        get_page(mm, pfn)
    mm.pte = replace(mm.pte, i, pfn)


def expected_refs(mm: Mm) -> int:
    """References a mapped-out page has with no outside user: the page cache's (shmem)."""
    return 1 if mm.shmem else 0


def refs_held_by(mm: Mm, thread: str) -> tuple[int, ...]:
    """Ghost for INV-REF: the pages on which thread holds a GUP reference."""
    return tuple(pfn for who, pfn in mm.gup_refs if who == thread)
