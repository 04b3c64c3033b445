"""v6.5: the modelled kernel as it is (kvmsim.kernel follows v6.5.3)."""

from . import Variant, register

v6_5 = register(
    Variant(
        "v6.5",
        description="Reload requested from kvm_unmap_gfn_range under mmu_lock; the reload reads "
        "mmu_invalidate_seq and re-requests itself while an invalidation is in progress",
    )
)
