"""Host operations on the VMM's memory, each calling the notifier chain in the kernel's order.

* ``migrate_folio``: mm/migrate.c (migrate_pages -> migrate_folio_unmap -> try_to_migrate_one,
  then migrate_folio_move); the old page is freed after range_end.
* ``zap_page_range_single``: MADV_DONTNEED; batched pages are freed either inside the window
  (tlb_flush_mmu when the batch fills) or after range_end (tlb_finish_mmu): both explored.
* ``shrink_folio``: reclaim of a shmem page (vmscan.c shrink_folio_list -> try_to_unmap, shmem
  writepage, __remove_mapping); ``touch`` later faults it back in (a new page if it was freed).
* ``change_protection``: an invalidation that changes no pfn (NUMA hinting, mprotect).
"""

from __future__ import annotations

from collections.abc import Generator

from ..engine import await_, choose, note
from .kvm_host import APIC_HVA, HVA_INDEX, MIGRATION, Mm, replace
from .mm import (
    alloc_page,
    expected_refs,
    get_page,
    handle_mm_fault,
    is_migration_entry,
    put_page,
)
from .mmu_notifier import (
    mmu_notifier_invalidate_range,
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)

Steps = Generator[str, None, None]


def migrate_folio(mm: Mm, hva: int, passes: int = 2) -> Steps:
    """Migrate the page behind hva to a new page (compaction, NUMA, memory hot-unplug).

    A reference held by someone else (KVM between GUP and release) makes the refcount freeze
    fail with -EAGAIN; the migration entry stays and the page stays locked until the next
    pass. Simplification: ``passes`` passes (the kernel makes up to 10), then the old page is
    mapped back.
    """
    i = HVA_INDEX[hva]
    src = mm.pte[i]
    if src is None or is_migration_entry(src):
        return
    # migrate_folio_unmap: isolate (+1 ref), lock src, allocate dst.
    await_(not mm.page_locked[src])
    get_page(mm, src)
    mm.page_locked = replace(mm.page_locked, src, True)
    dst = alloc_page(mm, hva)
    yield f"migrate_folio_unmap: isolate and lock page {src}, allocate page {dst}"
    yield from try_to_migrate_one(mm, hva, src)
    # migrate_folio_move: folio_migrate_mapping freezes the refcount at isolation + cache.
    frozen = False
    for attempt in range(passes):
        frozen = mm.page_ref[src] == 1 + expected_refs(mm)
        if frozen:
            break
        yield f"folio_migrate_mapping: page {src} has an extra reference, -EAGAIN ({attempt + 1})"
    if not frozen:
        # migrate_folio_undo_src: remove_migration_ptes(src, src), no notifier.
        mm.pte = replace(mm.pte, i, src)
        get_page(mm, src)
        mm.page_locked = replace(mm.page_locked, src, False)
        put_page(mm, dst)
        put_page(mm, src)  # the isolation reference
        note("migrate_fail")
        yield f"migrate_pages gives up: map page {src} back, unlock, free page {dst}"
        return
    if mm.shmem:
        mm.mapping = replace(mm.mapping, i, dst)  # dst's reference becomes the cache's
        put_page(mm, src)  # src loses the page cache's reference
        mm.pte = replace(mm.pte, i, dst)  # remove_migration_ptes(src, dst)
        get_page(mm, dst)
    else:
        mm.pte = replace(mm.pte, i, dst)  # anon: dst's reference becomes the mapping's
    mm.page_locked = replace(mm.page_locked, src, False)
    if hva == APIC_HVA and mm.kvm is not None:
        mm.kvm.apic_moved = True  # ghost
    yield f"migrate_folio_move: copy, map page {dst}, unlock page {src}"
    put_page(mm, src)  # migrate_folio_done: the isolation reference, the last one
    yield f"migrate_folio_done: put_page({src})"


def try_to_migrate_one(mm: Mm, hva: int, src: int) -> Steps:
    """rmap walk for migration: the PTE becomes a migration entry inside the notifier window."""
    i = HVA_INDEX[hva]
    yield from mmu_notifier_invalidate_range_start(mm, hva, hva + 1)
    mm.pte = replace(mm.pte, i, (MIGRATION, src))
    put_page(mm, src)  # the mapping's reference
    yield f"try_to_migrate_one: ptep_clear_flush, install migration entry for page {src}"
    yield from mmu_notifier_invalidate_range_end(mm, hva, hva + 1)


def try_to_unmap_one(mm: Mm, hva: int, src: int) -> Steps:
    """rmap walk for reclaim: a shmem PTE becomes none inside the notifier window."""
    i = HVA_INDEX[hva]
    yield from mmu_notifier_invalidate_range_start(mm, hva, hva + 1)
    mm.pte = replace(mm.pte, i, None)
    put_page(mm, src)  # the mapping's reference
    yield f"try_to_unmap_one: clear PTE of page {src}"
    yield from mmu_notifier_invalidate_range_end(mm, hva, hva + 1)


def zap_page_range_single(mm: Mm, hva: int) -> Steps:
    """MADV_DONTNEED on one page: clear the PTE, free the batched page before or after end."""
    i = HVA_INDEX[hva]
    if mm.pte[i] is None or is_migration_entry(mm.pte[i]):
        return
    yield from mmu_notifier_invalidate_range_start(mm, hva, hva + 1)
    pfn = mm.pte[i]
    mm.pte = replace(mm.pte, i, None)  # ptep_get_and_clear_full; the page goes in the batch
    early = choose(("after range_end", "before range_end"), "batch freed") == "before range_end"
    yield f"zap_pte_range: clear PTE of page {pfn}, batch it"
    if early:
        yield from mmu_notifier_invalidate_range(mm, hva, hva + 1)  # tlb_flush_mmu_tlbonly
        put_page(mm, pfn)
        yield f"tlb_flush_mmu: free batched page {pfn} (inside the window)"
    yield from mmu_notifier_invalidate_range_end(mm, hva, hva + 1)
    if not early:
        yield from mmu_notifier_invalidate_range(mm, hva, hva + 1)  # tlb_finish_mmu
        put_page(mm, pfn)
        yield f"tlb_finish_mmu: free batched page {pfn}"


def shrink_folio(mm: Mm, hva: int) -> Steps:
    """Reclaim the shmem page behind hva: unmap (notifier), then free it if nobody holds it."""
    i = HVA_INDEX[hva]
    src = mm.pte[i]
    if src is None or is_migration_entry(src):
        return
    await_(not mm.page_locked[src])
    get_page(mm, src)  # isolation from the LRU
    mm.page_locked = replace(mm.page_locked, src, True)
    yield f"shrink_folio_list: isolate and lock page {src}"
    yield from try_to_unmap_one(mm, hva, src)
    # shmem_writepage moves it to the swap cache (still findable by a fault); then
    # __remove_mapping freezes the refcount at isolation + swap cache.
    if mm.page_ref[src] == 1 + expected_refs(mm):
        mm.mapping = replace(mm.mapping, i, None)
        mm.page_locked = replace(mm.page_locked, src, False)
        put_page(mm, src)
        put_page(mm, src)
        yield f"shmem_writepage, __remove_mapping: page {src} swapped out and freed"
    else:
        mm.page_locked = replace(mm.page_locked, src, False)
        put_page(mm, src)
        yield f"__remove_mapping: page {src} has an extra reference, stays in the swap cache"


def touch(mm: Mm, hva: int) -> Steps:
    """The VMM touches hva: a none PTE is faulted in (swap-in allocates a new page)."""
    i = HVA_INDEX[hva]
    await_(not is_migration_entry(mm.pte[i]))
    if mm.pte[i] is None:
        handle_mm_fault(mm, hva)
        yield f"VMM touches {hva:#x}: handle_mm_fault maps page {mm.pte[i]}"


def change_protection(mm: Mm, hva: int) -> Steps:
    """An invalidation that changes no pfn (e.g. NUMA hinting), on some guest memory."""
    yield from mmu_notifier_invalidate_range_start(mm, hva, hva + 1)
    yield "change_pte_range: protection changed"
    yield from mmu_notifier_invalidate_range_end(mm, hva, hva + 1)


def host_thread(mm: Mm, ops: tuple[tuple[str, int, int], ...]) -> Steps:
    """A host thread running its operations, (name, hva, migration passes), in order."""
    for op, hva, passes in ops:
        if op == "migrate":
            yield from migrate_folio(mm, hva, passes)
        elif op == "zap":
            yield from zap_page_range_single(mm, hva)
        elif op == "swapout":
            yield from shrink_folio(mm, hva)
        elif op == "touch":
            yield from touch(mm, hva)
        elif op == "protect":
            yield from change_protection(mm, hva)
        else:
            raise ValueError(f"unknown host operation {op!r}")
