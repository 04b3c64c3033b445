"""KVM's generic MMU-notifier handling, mmu_lock and memslots (virt/kvm/kvm_main.c).

Invalidations are tracked with ``mmu_invalidate_in_progress`` (raised at range_start, under
the write lock, together with the accumulated hva range) and ``mmu_invalidate_seq`` (bumped
at range_end, before the count drops). Anything that looks up a pfn outside mmu_lock reads
the sequence first and, under mmu_lock, calls ``mmu_invalidate_retry_hva`` to learn whether
an invalidation may have raced with the lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

from ..engine import await_, fail, note
from .kvm_host import (
    ADDRESS_SPACES,
    APIC_ACCESS_PAGE_PRIVATE_MEMSLOT,
    MEMSLOTS,
    Kvm,
)
from .mm import hva_to_pfn, put_page
from .requests import KVM_REQ_TLB_FLUSH, kvm_make_all_cpus_request

Steps = Generator[str, None, None]
GfnRange = tuple[int, str, int]  # (as_id, slot id, gfn): one page per slot in this model

# v6.5 has no ->invalidate_range op (removed by "KVM: x86: Use standard mmu_notifier hook
# for APIC page"); v5.8-v6.4 variants install kvm_mmu_notifier_invalidate_range here.
kvm_mmu_notifier_invalidate_range: Callable[..., Steps] | None = None


# -- mmu_lock (an rwlock on x86: KVM_HAVE_MMU_RWLOCK) -----------------------------------
# Simplification: the queued rwlock's writer preference is not modelled; a waiter is
# simply not enabled until the lock is free for it.


def write_lock(kvm: Kvm) -> None:
    await_(not kvm.mmu_lock_writer and kvm.mmu_lock_readers == 0)
    kvm.mmu_lock_writer = True


def write_unlock(kvm: Kvm) -> None:
    kvm.mmu_lock_writer = False


def read_lock(kvm: Kvm) -> None:
    await_(not kvm.mmu_lock_writer)
    kvm.mmu_lock_readers += 1


def read_unlock(kvm: Kvm) -> None:
    kvm.mmu_lock_readers -= 1


def lockdep_assert_held(kvm: Kvm) -> None:
    if not kvm.mmu_lock_writer and kvm.mmu_lock_readers == 0:
        fail("INV-COUNTERS", "mmu_invalidate_retry_hva called without mmu_lock held")


# -- invalidation bookkeeping -----------------------------------------------------------


def kvm_mmu_invalidate_begin(kvm: Kvm, start: int, end: int) -> None:
    """in_progress++; the first invalidation sets the range, later ones widen it."""
    kvm.mmu_invalidate_in_progress += 1
    if kvm.mmu_invalidate_in_progress == 1:
        kvm.mmu_invalidate_range_start = start
        kvm.mmu_invalidate_range_end = end
    else:
        assert kvm.mmu_invalidate_range_start is not None
        assert kvm.mmu_invalidate_range_end is not None
        kvm.mmu_invalidate_range_start = min(kvm.mmu_invalidate_range_start, start)
        kvm.mmu_invalidate_range_end = max(kvm.mmu_invalidate_range_end, end)


def kvm_mmu_invalidate_end(kvm: Kvm, start: int, end: int) -> None:
    """seq++ (smp_wmb) then in_progress--: the bump is visible before the count drops."""
    kvm.mmu_invalidate_seq += 1
    kvm.mmu_invalidate_in_progress -= 1
    if kvm.mmu_invalidate_in_progress < 0:
        fail("INV-COUNTERS", "mmu_invalidate_in_progress went negative (BUG_ON)")
    if kvm.mmu_invalidate_in_progress == 0:
        kvm.reload_window = False  # ghost for STALL-6.5


def mmu_invalidate_retry_hva(kvm: Kvm, mmu_seq: int, hva: int) -> bool:
    """True if an invalidation covering hva is in progress, or any one ended since mmu_seq."""
    lockdep_assert_held(kvm)
    if kvm.mmu_invalidate_in_progress:
        assert kvm.mmu_invalidate_range_start is not None
        assert kvm.mmu_invalidate_range_end is not None
        if kvm.mmu_invalidate_range_start <= hva < kvm.mmu_invalidate_range_end:
            return True
    return kvm.mmu_invalidate_seq != mmu_seq


# -- memslots ---------------------------------------------------------------------------


def id_to_memslot(kvm: Kvm, slot_id: str) -> str | None:
    """The slot, or None; the APIC slot marked KVM_MEMSLOT_INVALID counts as unusable."""
    for slot, _gfn, _hva in MEMSLOTS:
        if slot == slot_id:
            return slot
    return None


def memslot_invalid(kvm: Kvm, slot: str) -> bool:
    return slot == APIC_ACCESS_PAGE_PRIVATE_MEMSLOT and kvm.apic_slot_invalid


def gfn_to_hva_memslot(slot: str, gfn: int) -> int:
    for sid, base_gfn, base_hva in MEMSLOTS:
        if sid == slot:
            return base_hva + (gfn - base_gfn)
    raise KeyError(slot)


def address_spaces(kvm: Kvm) -> tuple[int, ...]:
    return ADDRESS_SPACES if kvm.smm_enabled else ADDRESS_SPACES[:1]


def slots_intersecting(kvm: Kvm, start: int, end: int) -> list[GfnRange]:
    """The memslots whose hva interval intersects [start, end), in every address space."""
    out = []
    for as_id in address_spaces(kvm):
        for slot, gfn, hva in MEMSLOTS:
            if start <= hva < end:
                out.append((as_id, slot, gfn))
    return out


# -- GUP through a memslot --------------------------------------------------------------


def gfn_to_pfn_memslot(kvm: Kvm, slot: str, gfn: int) -> Generator[str, None, int | None]:
    """__gfn_to_pfn_memslot: hva of the gfn in the slot, then GUP (takes a reference)."""
    mm = kvm.mm
    assert mm is not None
    return (yield from hva_to_pfn(mm, gfn_to_hva_memslot(slot, gfn)))


def gfn_to_page(kvm: Kvm, gfn: int) -> Generator[str, None, int | None]:
    """gfn_to_page: through the address-space-0 memslots; no sequence count is read."""
    for slot, base_gfn, _hva in MEMSLOTS:
        if base_gfn == gfn:
            return (yield from gfn_to_pfn_memslot(kvm, slot, gfn))
    return None


def kvm_release_pfn_clean(kvm: Kvm, pfn: int) -> None:
    mm = kvm.mm
    assert mm is not None
    put_page(mm, pfn)


# -- the MMU-notifier callbacks ---------------------------------------------------------


def kvm_flush_remote_tlbs(kvm: Kvm) -> Steps:
    """No Hyper-V enlightened flush: request KVM_REQ_TLB_FLUSH on every vCPU, and wait."""
    note("remote_tlb_flush")
    yield from kvm_make_all_cpus_request(kvm, KVM_REQ_TLB_FLUSH)


def __kvm_handle_hva_range(
    kvm: Kvm,
    start: int,
    end: int,
    handler: Callable[..., Generator[str, None, bool]] | None,
    on_lock: Callable[[Kvm, int, int], None],
    flush_on_ret: bool,
) -> Generator[str, None, bool]:
    """Walk the memslots intersecting [start, end); lock and call on_lock at the first one.

    Simplification: SRCU is not modelled (memslots do not change during a run).
    """
    locked = False
    ret = False
    for gfn_range in slots_intersecting(kvm, start, end):
        if not locked:
            locked = True
            write_lock(kvm)
            on_lock(kvm, start, end)
            yield f"write_lock(mmu_lock); {on_lock.__name__}"
            if handler is None:
                break
        assert handler is not None
        flushed = yield from handler(kvm, gfn_range)
        ret = ret or flushed
    if flush_on_ret and ret:
        yield from kvm_flush_remote_tlbs(kvm)
    if locked:
        write_unlock(kvm)
        yield "write_unlock(mmu_lock)"
    return locked


def kvm_mmu_notifier_invalidate_range_start(kvm: Kvm, start: int, end: int) -> Steps:
    kvm.mn_active_invalidate_count += 1
    yield "mn_active_invalidate_count++"
    yield from __kvm_handle_hva_range(
        kvm, start, end, kvm_unmap_gfn_range, kvm_mmu_invalidate_begin, flush_on_ret=True
    )


def kvm_mmu_notifier_invalidate_range_end(kvm: Kvm, start: int, end: int) -> Steps:
    yield from __kvm_handle_hva_range(
        kvm, start, end, None, kvm_mmu_invalidate_end, flush_on_ret=False
    )
    kvm.mn_active_invalidate_count -= 1
    if kvm.mn_active_invalidate_count < 0:
        fail("INV-COUNTERS", "mn_active_invalidate_count went negative")
    yield "mn_active_invalidate_count--"


# mmu.c's handler, linked last: it depends on this file's helpers (as the C objects link).
from .tdp_mmu import kvm_unmap_gfn_range  # noqa: E402
