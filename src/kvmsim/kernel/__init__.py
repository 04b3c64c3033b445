"""The modelled kernel: one module per subsystem, named as in Linux (see docs/model.md).

kvm_main.c's notifier code calls mmu.c's kvm_unmap_gfn_range, which needs kvm_main.c's
helpers: the two modules link to each other, so kvm is imported first, whichever module a
user imports.
"""

from . import kvm  # noqa: F401
